"""A worker app whose task declares a hard limit above the redelivery budget."""

from celery_kit import make_app

app = make_app("kit_limits_bad")


@app.task(name="kit_limits_bad.too_slow", time_limit=100_000, soft_time_limit=90_000)
def too_slow() -> None:
    """Never runs: the worker must refuse to start."""
