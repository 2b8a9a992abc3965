"""Tasks, registered on the Celery app by ``create_app`` (no module-level app needed)."""

from __future__ import annotations

import uuid

from celery import Celery
from flask import current_app


def build_report(report_id: str) -> dict[str, str]:
    """Runs inside the Flask app context, so ``current_app.config`` is the app's config."""
    return {
        "report_id": report_id,
        "title": current_app.config["REPORT_TITLE"],
        "build_id": uuid.uuid4().hex,  # the same for duplicates: the body runs once
    }


def register(celery_app: Celery) -> None:
    """Register the tasks; ``idempotency_key`` is a kit task option (one build per id)."""
    celery_app.task(name="webapp.build_report", idempotency_key="report:{report_id}")(build_report)
