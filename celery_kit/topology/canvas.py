"""The countdown guard for whole canvases: every delay checked before the first message.

A group or chord header is sent one member at a time, so the per-message check in
:class:`~celery_kit.topology.publish.KitAMQP` alone would refuse a bad third member only
after the first two went out. Celery offers no hook that sees a whole canvas before it
is sent (``group.apply_async`` loops over its members itself, ``celery/canvas.py``), so
:func:`install_canvas_guard` wraps the ``apply_async`` of Celery's canvas classes once per
process. The wrapper walks the canvas (:func:`~celery_kit.topology.publish.check_canvas`)
at the outermost call only, and only for an app built by the kit; other apps are untouched.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import Any

from celery import canvas

from celery_kit.state import find_state
from celery_kit.topology.delays import delay_route
from celery_kit.topology.publish import check_canvas

__all__ = ["install_canvas_guard"]

#: True while an outer ``apply_async`` already checked the canvas this call belongs to.
_CHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar("celery_kit_canvas_checked")

#: Marks a wrapped method, so installing twice wraps once.
_MARK = "__celery_kit_canvas_guard__"


def _app_of(signature: Any) -> Any:
    try:
        return signature.app  # falls back to current_app; may raise under the app trap
    except Exception:
        return None


def _guarded(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def apply_async(self: Any, *args: Any, **options: Any) -> Any:
        if _CHECKED.get(False):
            return original(self, *args, **options)
        app = _app_of(self)
        if find_state(app) is not None:
            route = delay_route(app)  # the bound: max_countdown_s, or max_delay_s (delay set)
            check_canvas(
                self,
                max_countdown_s=route.max_delay_s,
                setting=route.bound_setting,
                options=options,
            )
        token = _CHECKED.set(True)
        try:
            return original(self, *args, **options)
        finally:
            _CHECKED.reset(token)

    setattr(apply_async, _MARK, True)
    return apply_async


def install_canvas_guard() -> None:
    """Wrap ``apply_async`` of ``Signature``, chain, group and chord (idempotent)."""
    for cls in (canvas.Signature, canvas._chain, canvas.group, canvas.chord):
        method = cls.__dict__.get("apply_async")
        if method is not None and not getattr(method, _MARK, False):
            cls.apply_async = _guarded(method)  # type: ignore[method-assign]
