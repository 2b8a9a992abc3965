"""A worker app with two tasks that break the start-up rules in different ways."""

from celery_kit import make_app

app = make_app("doctor_two_bad")


@app.task(name="doctor_two_bad.too_slow", time_limit=100_000, soft_time_limit=90_000)
def too_slow() -> None:
    """Hard limit far above the redelivery budget."""


@app.task(name="doctor_two_bad.inverted", time_limit=5, soft_time_limit=8)
def inverted() -> None:
    """Soft limit above the hard one."""
