"""An app built by ``make_app`` with the kit's defaults: no error and no warning."""

from celery_kit import make_app
from celery_kit.config.settings import Settings

app = make_app(
    "kit_defaults", settings=Settings(_environ={}, broker_url="redis://localhost:6379/0")
)


@app.task(name="kit_defaults.add", shared=False)
def add(x: int, y: int) -> int:
    return x + y


MUST: set[str] = set()
MUST_NOT: set[str] = set()  # the test also asserts no error and no warning at all
