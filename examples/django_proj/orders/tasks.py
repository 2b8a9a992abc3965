"""Tasks of the orders app, found by ``app.autodiscover_tasks()``."""

from __future__ import annotations

from celery import shared_task

from orders.models import Order


@shared_task(name="orders.process_order")
def process_order(order_id: int) -> dict[str, object]:
    """Mark the order processed. It exists: the task is only sent once it is committed."""
    order = Order.objects.get(pk=order_id)
    order.status = "processed"
    order.save(update_fields=["status"])
    return {"order_id": order.pk, "status": order.status}
