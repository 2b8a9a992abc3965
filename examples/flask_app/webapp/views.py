"""Routes: enqueue a report build, read a task's status."""

from __future__ import annotations

from flask import Blueprint, current_app
from flask.typing import ResponseReturnValue

from celery_kit import task_status

bp = Blueprint("reports", __name__)


@bp.post("/reports/<report_id>")
def start_report(report_id: str) -> ResponseReturnValue:
    celery_app = current_app.extensions["celery"]
    result = celery_app.tasks["webapp.build_report"].delay(report_id)
    return {"task_id": result.id}, 202


@bp.get("/tasks/<task_id>")
def task_state(task_id: str) -> ResponseReturnValue:
    return task_status(current_app.extensions["celery"], task_id)
