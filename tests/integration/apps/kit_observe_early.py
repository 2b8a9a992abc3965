"""``kit_observe``, whose module imports prometheus_client first (as Flower's or
django-prometheus's import would), before any worker code can set multiprocess mode."""

from __future__ import annotations

import prometheus_client  # noqa: F401
from kit_observe import app

__all__ = ["app"]
