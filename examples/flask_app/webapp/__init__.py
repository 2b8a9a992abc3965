"""An example Flask app: a route enqueues a report build, another reads its status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from celery_kit.integrations.flask import celery_init_app
from webapp import tasks, views


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """The app factory; Celery settings go in ``CELERY``, kit settings in ``CELERY_KIT``."""
    app = Flask(__name__)
    app.config.from_mapping(
        CELERY={"result_expires": 3600},  # Celery names; wins over the kit's 1-day default
        CELERY_KIT={"tasks": {"soft_time_limit_s": 50, "time_limit_s": 60}},
        REPORT_TITLE="Monthly report",
    )
    # FLASK_CELERY__broker_url=redis://... sets CELERY["broker_url"]; FLASK_REPORT_TITLE=...
    app.config.from_prefixed_env()
    if test_config:
        app.config.from_mapping(test_config)
    celery_app = celery_init_app(app)  # also stored in app.extensions["celery"]
    tasks.register(celery_app)
    app.register_blueprint(views.bp)
    return app
