"""Tasks found by autodiscovery."""

from celery import shared_task


@shared_task(name="shop.charge", queue="payments")
def charge(order_id: int) -> None: ...
