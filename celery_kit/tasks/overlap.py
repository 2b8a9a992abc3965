"""The overlap guard: a periodic run with ``overlap = "skip"`` runs only if the previous run
of the same entry has finished. Runs in the pool process (``KitTask.__call__``).

The run holds the kit's lock ``beat:<entry>`` (:class:`~celery_kit.coordination.locks.Lock`:
owner-checked, renewed every third of ``beat.overlap_lock_ttl_s`` while the run lasts,
released when it ends). A run that finds the lock taken is skipped: it ends ``IGNORED``,
is logged, and is counted in ``<prefix>_beat_overlap_skipped_total{entry,name}``
(``KitState`` skip hooks, registered by the metrics).

What happens when things die:

* worker SIGKILLed mid-run: renewal stops with the process; the next run can start once
  the lock expires (``beat.overlap_lock_ttl_s`` at most), so a killed run blocks at most
  that long;
* Redis unreachable when the run starts: the run is skipped (the guard cannot prove that
  no other run is going) and counted; beat cannot schedule without Redis either.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from celery import states
from celery.exceptions import Ignore

from celery_kit.config.schedules import ENTRY_HEADER, OVERLAP_HEADER
from celery_kit.coordination.client import kit_redis
from celery_kit.coordination.locks import Lock
from celery_kit.exceptions import RedisUnavailableError
from celery_kit.state import state_of

if TYPE_CHECKING:
    from celery import Celery, Task

__all__ = ["lock_name", "run_exclusive", "wants_guard"]

logger = logging.getLogger(__name__)


def lock_name(entry: str) -> str:
    """The lock an entry's runs hold (key ``<redis.key_prefix>:lock:beat:<entry>``)."""
    return f"beat:{entry}"


def wants_guard(headers: dict[str, Any] | None) -> bool:
    """True for a message beat sent for an entry with ``overlap = "skip"``."""
    if not headers:
        return False
    return headers.get(OVERLAP_HEADER) == "skip" and bool(headers.get(ENTRY_HEADER))


def run_exclusive(
    task: Task[Any, Any], call: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Run ``call(*args, **kwargs)`` holding the entry's lock, or skip the run."""
    entry = str((task.request.headers or {})[ENTRY_HEADER])
    ttl_s = state_of(task.app).settings.beat.overlap_lock_ttl_s
    lock = Lock(lock_name(entry), ttl_s=ttl_s, resources=kit_redis(task.app))
    try:
        got = lock.acquire()
    except RedisUnavailableError as exc:
        _skip(task, entry, f"the overlap lock could not be checked ({exc})")
    if not got:
        _skip(task, entry, "the previous run of this entry is still running")
    try:
        return call(*args, **kwargs)
    finally:
        lock.release()


def _skip(task: Task[Any, Any], entry: str, why: str) -> NoReturn:
    logger.warning("celery_kit: beat entry %r: run %s skipped: %s", entry, task.request.id, why)
    _count(task.app, entry, task.name)
    try:  # IGNORED rather than a STARTED that never ends
        task.update_state(state=states.IGNORED, meta={"skipped": why})
    except Exception as exc:
        logger.debug("celery_kit: could not store IGNORED for %s: %s", task.name, exc)
    raise Ignore(why)


def _count(app: Celery, entry: str, name: str) -> None:
    """Tell whoever counts skips (the metrics register a hook in ``KitState``)."""
    for hook in state_of(app).overlap_skip_hooks:
        try:
            hook(entry, name)
        except Exception:  # an observer never breaks the task
            logger.exception("celery_kit: overlap skip hook failed")
