"""An order, processed by a task once the transaction that created it has committed."""

from __future__ import annotations

from django.db import models


class Order(models.Model):
    item = models.CharField(max_length=100)
    #: "new" until the ``orders.process_order`` task has run.
    status = models.CharField(max_length=20, default="new")
