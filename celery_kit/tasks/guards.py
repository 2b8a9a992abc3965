"""Runs a task body inside its kit guards, in the pool process.

Order: global rate limit -> idempotency claim -> lock -> body -> record the result or
release, then the retry policy / dead letter. A guard that cannot admit the task now
*defers* it: the message is re-published with a countdown and the same ``retries`` (so
waiting never uses up retries and never busy-loops), and the run ends RETRY with a
:class:`TaskDeferred` reason. Nothing is held across a deferral or a retry.
"""

from __future__ import annotations

import inspect
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, cast

import redis
from celery import states
from celery.exceptions import Ignore, Reject, Retry, TaskPredicate

from celery_kit.coordination.client import KitRedis, kit_redis
from celery_kit.coordination.dead_letter import FIRST_FAILED_HEADER, now_iso
from celery_kit.coordination.idempotency import Claim, new_token
from celery_kit.coordination.leases import LeaseHandle
from celery_kit.coordination.locks import Lock, OnBusy
from celery_kit.coordination.ratelimit import RateLimiter
from celery_kit.exceptions import (
    LockTakenError,
    RedisUnavailableError,
    TaskDeferred,
    TaskOptionError,
)
from celery_kit.state import settings_of
from celery_kit.tasks.completion import record_success
from celery_kit.tasks.duplicates import await_holder, duplicate_countdown
from celery_kit.tasks.retry import after_failure, max_retries

if TYPE_CHECKING:
    from celery_kit.config.settings import Settings
    from celery_kit.tasks.base import KitTask
    from celery_kit.tasks.options import KeySpec, Plan

__all__ = ["before_retry", "bound_arguments", "defer", "render_key", "run_guarded"]

logger = logging.getLogger(__name__)

#: Message headers the kit reads and writes (custom headers survive Celery retries).
FIRST_FAILED = FIRST_FAILED_HEADER
DEFERRALS = "kit_deferrals"
#: Request attribute holding what this run holds (released before any retry).
_HELD = "kit_held"
_NOTHING: Any = object()


@dataclass
class _Held:
    kr: KitRedis
    claim: Claim | None = None
    lease: LeaseHandle | None = None
    lease_s: float = 0.0
    lock: Lock | None = None


def bound_arguments(task: KitTask, args: Any, kwargs: Any) -> dict[str, Any]:
    """The call's arguments by name (defaults applied), for key templates."""
    cls = type(task)
    sig: inspect.Signature | None = cls.__dict__.get("_kit_signature")
    if sig is None:
        sig = inspect.signature(task.run)
        setattr(cls, "_kit_signature", sig)  # noqa: B010 - per-class cache, immutable value
    bound = sig.bind(*(args or ()), **(kwargs or {}))
    bound.apply_defaults()
    return dict(bound.arguments)


def render_key(task: KitTask, spec: KeySpec, bound: dict[str, Any], args: Any, kwargs: Any) -> str:
    """The key ``spec`` makes for one call.

    Raises:
        TaskOptionError: the template names an argument the call does not have.
    """
    try:
        return spec.render(bound, tuple(args or ()), dict(kwargs or {}))
    except (KeyError, IndexError, AttributeError) as exc:
        raise TaskOptionError(
            f"task {task.name!r}: cannot build a key from {spec.source!r}: missing {exc}"
        ) from None


def run_guarded(
    task: KitTask,
    plan: Plan,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    call: Callable[..., Any],
) -> Any:
    """Run ``call(*args, **kwargs)`` (the body) under ``plan``'s guards."""
    request = task.request
    settings = settings_of(task.app)
    kr = kit_redis(task.app) if plan.rate or plan.idempotency or plan.lock else None
    bound = bound_arguments(task, args, kwargs) if plan.needs_arguments else {}
    held = _Held(kr) if kr is not None else None
    setattr(request, _HELD, held)
    try:
        if held is not None:
            stored = _admit(task, plan, settings, held, bound, args, kwargs)
            if stored is not _NOTHING:
                return stored
    except (RedisUnavailableError, redis.RedisError) as exc:
        _release(held)
        defer(task, random.uniform(2.0, 8.0), f"the kit's Redis is unreachable ({exc})")
    except LockTakenError as exc:
        _release(held)
        after_failure(task, plan, settings, exc)
        raise
    try:
        result = call(*args, **kwargs)
    except TaskPredicate:
        _release(held)
        raise
    except Exception as exc:
        _release(held)
        after_failure(task, plan, settings, exc)
        raise
    except BaseException:
        _release(held)
        raise
    if held is not None:
        _finish(task, held, result, settings)
    return result


def _admit(
    task: KitTask,
    plan: Plan,
    settings: Settings,
    held: _Held,
    bound: dict[str, Any],
    args: Any,
    kwargs: Any,
) -> Any:
    """Take the guards in order; return a stored result, or ``_NOTHING`` to run the body."""
    kr, request = held.kr, task.request
    if plan.rate is not None:
        name = render_key(task, plan.rate_key, bound, args, kwargs) if plan.rate_key else task.name
        limiter = RateLimiter(name, plan.rate, burst=task.rate_burst, resources=kr)
        wait = limiter.try_acquire(max_wait_s=settings.tasks.max_countdown_s)
        if wait > 0:
            defer(task, wait * random.uniform(1.0, 1.1), f"global rate limit {task.rate} ({name})")
    if plan.idempotency is not None:
        key = kr.keys.idempotency(
            task.name, render_key(task, plan.idempotency, bound, args, kwargs)
        )
        lease_s = task.idempotency_lease_s or settings.idempotency.lease_s
        claim = Claim(key, new_token(), kr)
        outcome = claim.claim(task_id=str(request.id), lease_s=lease_s)
        request.kit_idempotency = outcome.state  # type: ignore[attr-defined]  # observability/tracing.py
        if outcome.state == "done":
            logger.info("celery_kit: %s[%s]: %s already done", task.name, request.id, key)
        elif outcome.state == "busy":
            logger.info(
                "celery_kit: %s[%s]: %s is being run by task %s; waiting for its result",
                task.name,
                request.id,
                key,
                outcome.holder,
            )
            outcome = await_holder(claim, str(request.id), lease_s)
        if outcome.state == "done":
            return outcome.result
        if outcome.state == "busy":
            deferrals = int((request.headers or {}).get(DEFERRALS, 0))
            wait = duplicate_countdown(deferrals, lease_s)
            defer(task, wait, f"{key} is being run by task {outcome.holder}")
        held.claim, held.lease_s = claim, lease_s
        held.lease = kr.keeper.keep(
            lambda: claim.renew(lease_s), ttl_s=lease_s, what=f"idempotency claim {key}"
        )
    if plan.lock is not None:
        name = render_key(task, plan.lock, bound, args, kwargs)
        ttl_s = task.lock_ttl_s or settings.locks.ttl_s
        lock = Lock(name, ttl_s=ttl_s, resources=kr)
        if not lock.acquire():
            _lock_busy(task, plan, settings, held, lock)
        held.lock = lock
    return _NOTHING


def _lock_busy(task: KitTask, plan: Plan, settings: Settings, held: _Held, lock: Lock) -> NoReturn:
    _release(held)
    why = f"lock {lock.name!r} is held by another run"
    if plan.lock_on_busy is OnBusy.SKIP:
        logger.info("celery_kit: %s[%s] skipped: %s", task.name, task.request.id, why)
        try:  # show IGNORED rather than a STARTED that never ends
            task.update_state(state=states.IGNORED, meta={"skipped": why})
        except Exception as exc:
            logger.debug("celery_kit: could not store IGNORED for %s: %s", task.name, exc)
        raise Ignore(why)
    if plan.lock_on_busy is OnBusy.FAIL:
        raise LockTakenError(f"{why} (lock_on_busy='fail')")
    deferrals = int((task.request.headers or {}).get(DEFERRALS, 0))
    wait = min(lock.ttl_s, 0.5 * 2.0 ** min(deferrals, 16)) * random.uniform(0.8, 1.2)
    defer(task, wait, why)


def defer(task: KitTask, countdown_s: float, why: str) -> NoReturn:
    """Re-publish the running message with a countdown (same id and ``retries``) and
    end this run as RETRY. Under eager execution raise :class:`TaskDeferred` instead."""
    request = task.request
    settings = settings_of(task.app)
    countdown = round(min(max(countdown_s, 0.05), settings.tasks.max_countdown_s), 3)
    if request.is_eager:
        raise TaskDeferred(f"{why}; eager execution cannot wait, run it on a worker")
    headers = dict(request.headers or {})
    headers[DEFERRALS] = int(headers.get(DEFERRALS, 0)) + 1
    sig = task.signature_from_request(
        request, countdown=countdown, retries=request.retries, headers=headers
    )
    try:
        sig.apply_async()
    except Exception as exc:  # broker away: give the message back rather than lose it
        raise Reject(exc, requeue=True) from exc
    raise Retry(
        f"deferred {countdown:g} s: {why}",
        exc=TaskDeferred(why),
        when=cast(Any, countdown),
        sig=sig,
    )


def _release(held: _Held | None) -> None:
    """Give back whatever this run holds (idempotent; errors logged, TTLs clean up)."""
    if held is None:
        return
    claim, held.claim = held.claim, None
    if held.lease is not None:
        held.kr.keeper.drop(held.lease)
        held.lease = None
    if claim is not None:
        try:
            claim.release()
        except redis.RedisError as exc:
            logger.warning("celery_kit: could not release %s (%s); it expires", claim.key, exc)
    lock, held.lock = held.lock, None
    if lock is not None:
        lock.release()


def _finish(task: KitTask, held: _Held, result: Any, settings: Settings) -> None:
    claim, held.claim = held.claim, None
    if held.lease is not None:
        held.kr.keeper.drop(held.lease)
        held.lease = None
    if claim is not None:
        record_success(
            held.kr,
            claim,
            result,
            lease_s=held.lease_s,
            ttl_s=task.idempotency_ttl_s or settings.idempotency.result_ttl_s,
            task_id=str(task.request.id),
            what=f"{task.name}[{task.request.id}]",
        )
    lock, held.lock = held.lock, None
    if lock is not None:
        lock.release()


def before_retry(task: KitTask, options: dict[str, Any]) -> None:
    """Called by ``KitTask.retry``: release what this run holds, stamp the first failure
    time, and apply ``retry.max_retries`` when the task leaves ``max_retries`` unset."""
    request = task.request
    _release(getattr(request, _HELD, None))
    if request.called_directly:
        return
    headers = dict(request.headers or {})
    headers.setdefault(FIRST_FAILED, now_iso())
    options["headers"] = {**headers, **(options.get("headers") or {})}
    plan = task._kit_plan
    if plan is not None and plan.retry and options.get("max_retries") is None:
        options["max_retries"] = max_retries(task, settings_of(task.app))
