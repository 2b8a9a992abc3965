"""Create an order and enqueue its processing in the same transaction; read an order."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET, require_POST

from orders.models import Order
from orders.tasks import process_order


class PaymentDeclined(Exception):
    """Raised inside the transaction: the order and its task are both dropped."""


@require_POST
def create_order(request: HttpRequest) -> JsonResponse:
    try:
        with transaction.atomic():
            order = Order.objects.create(item=request.POST.get("item", "book"))
            # Sent when the transaction commits; never sent if it rolls back.
            process_order.delay_on_commit(order.pk)
            if request.POST.get("simulate_declined"):
                raise PaymentDeclined(order.item)
    except PaymentDeclined:
        return JsonResponse({"rolled_back": True}, status=409)
    return JsonResponse({"order_id": order.pk}, status=201)


@require_GET
def order_detail(request: HttpRequest, order_id: int) -> JsonResponse:
    order = get_object_or_404(Order, pk=order_id)
    return JsonResponse({"order_id": order.pk, "item": order.item, "status": order.status})
