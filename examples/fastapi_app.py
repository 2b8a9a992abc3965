"""FastAPI: enqueue from an async endpoint without blocking the event loop, poll the status.

Run the API with ``uvicorn examples.fastapi_app:api`` and the worker with
``celery -A examples.fastapi_app worker``.
"""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from fastapi import FastAPI

from celery_kit import make_app, task_status

celery_app = make_app("fastapi_app")  # broker from CELERY_BROKER_URL or CELERY_KIT_*


@celery_app.task(name="fastapi_app.add", shared=False)
def add(x: int, y: int) -> int:
    return x + y


api = FastAPI()


@api.post("/add", status_code=202)
async def enqueue_add(x: int, y: int) -> dict[str, str]:
    # Publishing is blocking network I/O: run it in a worker thread, not on the event loop.
    result = await to_thread.run_sync(add.delay, x, y)
    return {"task_id": result.id}


@api.get("/tasks/{task_id}")
async def get_status(task_id: str) -> dict[str, Any]:
    # Reading the result backend blocks too.
    return await to_thread.run_sync(task_status, celery_app, task_id)
