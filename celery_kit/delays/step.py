"""The mover inside every worker's main process (``delays.mover_in_worker``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import bootsteps

from celery_kit.delays.mover import Mover

if TYPE_CHECKING:
    from celery import Celery

    from celery_kit.config.settings import Settings

__all__ = ["MoverStep", "install_delays"]


class MoverStep(bootsteps.StartStopStep):
    """Starts a :class:`Mover` thread in the worker's main process (only the leader moves)."""

    label = "celery_kit delay mover"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.mover: Mover | None = None

    def start(self, parent: Any) -> None:
        self.mover = Mover(parent.app)
        self.mover.start()

    def stop(self, parent: Any) -> None:
        mover, self.mover = self.mover, None
        if mover is not None:
            mover.stop()

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)


def install_delays(app: Celery, settings: Settings) -> None:
    """Add the worker's mover step (when the delay set is in use)."""
    if not settings.uses_delay_set:
        return
    if settings.delays.mover_in_worker:
        app.steps["worker"].add(MoverStep)
