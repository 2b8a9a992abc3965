"""Distributed locks with a mandatory TTL, owner-checked release and automatic renewal.

Built on redis-py's :class:`redis.lock.Lock` (owner-checked release and re-acquire in
Lua); the kit adds a re-entrant acquire script (safe when a connection error makes
redis-py resend it), renewal by the process's lease keeper, and a policy for a taken
lock. Use it as a context manager, a decorator, or the ``lock=`` task option.

What happens when things die:

* holder SIGKILLed: renewals stop with the process; others get the lock after ``ttl_s``;
* holder outlives its lease (renewal impossible, e.g. Redis away longer than the TTL):
  its release is refused by the token check and cannot delete the next holder's lock
  (a warning is logged);
* Redis unreachable when acquiring: :class:`RedisUnavailableError` (a task defers);
  when releasing: logged, and the lock expires after its TTL.
"""

from __future__ import annotations

import enum
import functools
import inspect
import logging
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import redis
import redis.lock

from celery_kit.coordination import client as redis_client
from celery_kit.coordination.client import KitRedis
from celery_kit.coordination.leases import LeaseHandle, LeaseKeeper
from celery_kit.exceptions import LockTakenError, RedisUnavailableError

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["Lock", "OnBusy"]

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


class OnBusy(str, enum.Enum):
    """What a task does when its lock is taken."""

    #: Do not run; the task ends IGNORED (a periodic run that would overlap the last).
    SKIP = "skip"
    #: Try again later (a countdown, not counted against ``max_retries``).
    RETRY = "retry"
    #: Fail with :class:`LockTakenError` (a ``RetryingTask`` retries it with backoff).
    FAIL = "fail"


class _RedisLock(redis.lock.Lock):
    """redis-py's Lock with an acquire that succeeds again for the same token."""

    LUA_ACQUIRE = """
    local held = redis.call('GET', KEYS[1])
    if held == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
    if held then return 0 end
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 1
    """

    def __init__(self, kr: KitRedis, name: str, ttl_s: float) -> None:
        super().__init__(kr.client, name, timeout=ttl_s, blocking=False, thread_local=False)
        self._kr = kr

    def do_acquire(self, token: str) -> bool:
        timeout_ms = max(1, int(float(self.timeout or 0) * 1000))
        return bool(self._kr.run(self.LUA_ACQUIRE, [self.name], [token, timeout_ms]))


class Lock:
    """A named lock held for at most ``ttl_s`` unless renewed.

    Args:
        name: the lock's name (the key is ``<prefix>:lock:<name>``). Used as a
            decorator, ``name`` may be a template of the function's arguments
            (``"report:{report_id}"``).
        ttl_s: lease length; mandatory, because a lock without one is held forever by
            a crashed holder.
        renew: renew every ``ttl_s / 3`` while held (default), so long holders keep it.
        app: a ``make_app()`` app (its Redis and key prefix), or
        client: a ``redis.Redis`` (then ``key_prefix`` or ``celery_kit``), or
        resources: an already resolved ``KitRedis`` (what the task options use).
        blocking_timeout_s: how long :meth:`acquire` waits for a taken lock (0: not).
    """

    def __init__(
        self,
        name: str,
        *,
        ttl_s: float,
        renew: bool = True,
        app: Celery | None = None,
        client: redis.Redis | None = None,
        key_prefix: str | None = None,
        resources: KitRedis | None = None,
        blocking_timeout_s: float = 0.0,
    ) -> None:
        if not ttl_s or ttl_s <= 0:
            raise ValueError("Lock(ttl_s=...) must be > 0: a lock without a TTL is never freed")
        self.name = name
        self.ttl_s = float(ttl_s)
        self.renew = renew
        self.blocking_timeout_s = blocking_timeout_s
        self._app, self._client, self._prefix = app, client, key_prefix
        self._kr: KitRedis | None = resources
        self._lock: _RedisLock | None = None
        self._lease: LeaseHandle | None = None
        self._keeper: LeaseKeeper | None = None
        #: Set when renewal found the lock taken over while we still held it.
        self.lost = False

    @property
    def key(self) -> str:
        """The Redis key of this lock."""
        return self._resources().keys.lock(self.name)

    def _resources(self) -> KitRedis:
        if self._kr is None:
            self._kr = redis_client.resources(
                self._app, client=self._client, key_prefix=self._prefix
            )
        return self._kr

    def acquire(self) -> bool:
        """Take the lock if free (waiting up to ``blocking_timeout_s``); start renewing.

        Raises:
            RedisUnavailableError: Redis did not answer.
        """
        kr = self._resources()
        lock = _RedisLock(kr, kr.keys.lock(self.name), self.ttl_s)
        try:
            got = lock.acquire(
                blocking=self.blocking_timeout_s > 0,
                blocking_timeout=self.blocking_timeout_s or None,
                token=uuid.uuid4().hex,
            )
        except redis.RedisError as exc:
            raise RedisUnavailableError(f"could not acquire lock {self.name!r}: {exc}") from exc
        if not got:
            return False
        self._lock, self.lost = lock, False
        if self.renew:
            self._keeper = kr.keeper
            self._lease = self._keeper.keep(
                self._renew_once, ttl_s=self.ttl_s, what=f"lock {self.name!r}", on_lost=self._mark
            )
        return True

    def _renew_once(self) -> bool:
        lock = self._lock
        if lock is None:
            return False
        try:
            return bool(lock.reacquire())
        except redis.exceptions.LockError:
            return False

    def _mark(self) -> None:
        self.lost = True

    def remaining_s(self) -> float:
        """Seconds before the lock (whoever holds it) expires; 0 if free."""
        kr = self._resources()
        ms = int(kr.client.pttl(kr.keys.lock(self.name)))
        return max(ms, 0) / 1000.0

    def release(self) -> bool:
        """Release if still ours (never a bare ``DEL``).

        Returns:
            False if the lease had expired and the lock was free or someone else's (that
            holder's lock is left untouched); also False if Redis is unreachable (the
            lock then expires after its TTL).
        """
        lock, self._lock = self._lock, None
        if self._lease is not None and self._keeper is not None:
            self._keeper.drop(self._lease)
            self._lease = None
        if lock is None:
            return False
        try:
            lock.release()
        except redis.exceptions.LockNotOwnedError:
            logger.warning(
                "celery_kit: lock %r expired before its holder released it (it ran past"
                " ttl_s without renewal); the current holder's lock was left alone",
                self.name,
            )
            return False
        except redis.RedisError as exc:
            logger.warning("celery_kit: could not release lock %r (%s)", self.name, exc)
            return False
        return True

    def __enter__(self) -> Lock:
        if not self.acquire():
            raise LockTakenError(
                f"lock {self.name!r} is held by someone else; wait (blocking_timeout_s=),"
                " or try later"
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __call__(self, fn: F) -> F:
        """Decorate ``fn``: each call holds its own lock (``name`` formatted from its args)."""
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            name = self.name.format_map(bound.arguments)
            with Lock(
                name,
                ttl_s=self.ttl_s,
                renew=self.renew,
                app=self._app,
                client=self._client,
                key_prefix=self._prefix,
                resources=self._kr,
                blocking_timeout_s=self.blocking_timeout_s,
            ):
                return fn(*args, **kwargs)

        return locked  # type: ignore[return-value]
