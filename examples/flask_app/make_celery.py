"""Worker entry point: ``celery -A make_celery worker`` (the Flask app builds the Celery app)."""

from __future__ import annotations

from webapp import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
