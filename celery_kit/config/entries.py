"""What ``build_conf`` produces: one entry per Celery key, and the redelivery budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery_kit.config.sources import Origin

__all__ = ["ConfEntry", "RedeliveryBudget"]


@dataclass(frozen=True)
class ConfEntry:
    """One Celery key as the kit sets it."""

    value: Any
    origin: Origin
    #: The kit setting (``tasks.time_limit_s``) or override key that produced it.
    source: str


@dataclass(frozen=True)
class RedeliveryBudget:
    """How long a message may stay unacknowledged, and why (all in seconds).

    A late-ack message is unacknowledged while it waits behind prefetched work
    (``prefetch x hard limit`` at worst), while it waits for its countdown/ETA (Celery
    holds delayed messages in the worker), and while it runs.
    """

    max_time_limit_s: float
    prefetch_multiplier: int
    max_delay_s: float
    margin_s: float

    @property
    def required_s(self) -> float:
        """The shortest safe visibility timeout / consumer timeout."""
        return self.max_time_limit_s * self.prefetch_multiplier + self.max_delay_s + self.margin_s

    def explain(self) -> str:
        """The arithmetic, for error messages and ``kit config``."""
        return (
            f"{self.max_time_limit_s:g} s hard limit x {self.prefetch_multiplier} prefetch"
            f" + {self.max_delay_s:g} s longest countdown/retry delay + {self.margin_s:g} s"
            f" margin = {self.required_s:g} s"
        )
