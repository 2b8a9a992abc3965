"""The delay route: which delayed messages wait in the delay set, by one rule and one clock.

A message whose ETA is more than ``delays.effective_threshold_s`` ahead of the kit's clock
is stamped with :data:`~celery_kit.config.delays.DUE_AT_HEADER`; the kit's Redis transport
then stores it in the delay set instead of its queue. Sooner ones go to the queue as
usual (Celery's worker holds them the few seconds left).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from celery_kit.config.delays import DUE_AT_HEADER
from celery_kit.state import find_state, state_of

if TYPE_CHECKING:
    from celery import Celery

__all__ = [
    "DelayClock",
    "DelayRoute",
    "MoveHooks",
    "delay_clock",
    "delay_route",
    "due_epoch",
    "move_hooks",
    "set_clock",
]


@dataclass(frozen=True)
class DelayClock:
    """The clock the delay route and the mover read (epoch seconds); tests replace it."""

    now: Callable[[], float] = time.time


def set_clock(app: Celery, now: Callable[[], float]) -> None:
    """Use ``now`` as the delay clock of ``app`` in this process (publisher and mover)."""
    state_of(app).put(DelayClock(now))


def delay_clock(app: Celery) -> Callable[[], float]:
    """The delay clock of ``app`` (``time.time`` unless :func:`set_clock` replaced it)."""
    state = find_state(app)
    found = state.get(DelayClock) if state is not None else None
    return found.now if found is not None else time.time


def due_epoch(eta: Any) -> float | None:
    """An ETA (ISO 8601 text or datetime; naive means UTC) as epoch seconds."""
    if eta is None:
        return None
    when = datetime.fromisoformat(eta) if isinstance(eta, str) else eta
    if not isinstance(when, datetime):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


@dataclass(frozen=True)
class DelayRoute:
    """Stamps (or clears) the due-time header of one outgoing message."""

    enabled: bool
    threshold_s: float
    app: Any
    #: The publish-time bound on a delay: ``delays.max_delay_s`` when the delay set takes
    #: long delays, else ``tasks.max_countdown_s`` (the worker holds them).
    max_delay_s: float = float("inf")
    bound_setting: str = "tasks.max_countdown_s"

    def stamp(self, headers: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, Any] | None:
        """Set the header on ``headers`` when the message goes to the delay set, remove it
        otherwise; returns ``extra`` (per-call headers, which override) made consistent."""
        due = due_epoch(headers.get("eta")) if self.enabled else None
        if due is not None and due - delay_clock(self.app)() > self.threshold_s:
            headers[DUE_AT_HEADER] = due
            if extra is not None and DUE_AT_HEADER in extra:
                return {**extra, DUE_AT_HEADER: due}
            return extra
        headers.pop(DUE_AT_HEADER, None)
        if extra is not None and DUE_AT_HEADER in extra:  # a retry copies its headers
            return {k: v for k, v in extra.items() if k != DUE_AT_HEADER}
        return extra


def delay_route(app: Celery) -> DelayRoute:
    """The delay route of ``app`` (disabled unless the delay set is in use)."""
    state = find_state(app)
    found = state.get(DelayRoute) if state is not None else None
    if found is None or found.app is not app:
        settings = state.settings if state is not None else None
        if settings is None:
            found = DelayRoute(False, 0.0, app)
        elif settings.uses_delay_set:
            d = settings.delays
            found = DelayRoute(
                True, d.effective_threshold_s, app, d.max_delay_s, "delays.max_delay_s"
            )
        else:
            found = DelayRoute(False, 0.0, app, settings.tasks.max_countdown_s)
        if state is not None:
            state.put(found)
    return found


@dataclass(frozen=True)
class MoveHooks:
    """Callables run with the lateness (s) of each batch the mover moved (metrics)."""

    hooks: list[Callable[[list[float]], None]]


def move_hooks(app: Celery) -> list[Callable[[list[float]], None]]:
    """The app's mover hooks (a list to append to)."""
    state = state_of(app)
    found = state.get(MoveHooks)
    if found is None:
        found = state.put(MoveHooks([]))
    return found.hooks
