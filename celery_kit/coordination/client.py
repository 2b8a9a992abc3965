"""The kit's Redis: one lazy client per app and per process (kept in the app's ``KitState``).

Every key celery_kit writes comes from :class:`~celery_kit.coordination.keys.Keys`; no
module holds a client. After a fork (prefork pool) the child builds its own client on
first use instead of sharing the parent's sockets.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import ExponentialBackoff
from redis.commands.core import Script
from redis.retry import Retry

from celery_kit.coordination.keys import Keys, keys_of
from celery_kit.coordination.leases import LeaseHandle, LeaseKeeper
from celery_kit.coordination.pinned import ScriptConn, Sent
from celery_kit.exceptions import ConfigError
from celery_kit.state import settings_of, state_of

if TYPE_CHECKING:
    from celery import Celery

    from celery_kit.config.settings import Settings

__all__ = ["Keys", "KitRedis", "keys_of", "kit_redis", "make_client", "redis_url", "resources"]

_REDIS_SCHEMES = ("redis://", "rediss://")
#: An idle process reads the reply of a script sent without waiting this long after.
SETTLE_AFTER_S = 0.2
#: While those replies cannot be read (Redis away), one warning this often.
_SETTLE_WARN_EVERY_S = 10.0

logger = logging.getLogger(__name__)


def redis_url(settings: Settings) -> str:
    """The Redis URL of the kit's helpers: ``redis.url``, else the broker, else the backend.

    Raises:
        ConfigError: none of the three is a Redis URL.
    """
    if settings.redis.url:
        return settings.redis.url
    broker = settings.broker_url.split(";")[0].strip()
    if broker.lower().startswith(_REDIS_SCHEMES):
        return broker
    backend = settings.result_backend or ""
    if backend.lower().startswith(_REDIS_SCHEMES):
        return backend
    raise ConfigError(
        "locks, idempotency keys, rate limits and the dead-letter queue keep their state in"
        " Redis, but neither the broker nor the result backend is Redis: set redis.url"
        " (CELERY_KIT_REDIS__URL), e.g. redis://redis:6379/2"
    )


def make_client(url: str, settings: Settings) -> redis.Redis:
    """A client for ``url`` with the kit's timeouts and short retry on connection errors.

    Retrying is safe for every kit script: each is written so that running it twice with
    the same token has the effect of running it once (a retried rate-limit take may cost
    one extra token, the conservative direction).
    """
    conf = settings.redis
    return redis.Redis.from_url(
        url,
        socket_timeout=conf.socket_timeout_s,
        socket_connect_timeout=conf.socket_timeout_s,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), conf.retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


@dataclass
class KitRedis:
    """The kit's Redis resources for one app in one process.

    ``pinned`` (the app's own, from :func:`kit_redis`): scripts run on one connection kept
    for the life of the process (:class:`~celery_kit.coordination.pinned.ScriptConn`), and
    may be sent without waiting for the reply. Otherwise (a caller's ``client=``) each
    script goes through redis-py's ``Script`` and the pool, as any command would.
    """

    client: redis.Redis
    keys: Keys
    pid: int = field(default_factory=os.getpid)
    pinned: ScriptConn | None = None
    _scripts: dict[str, Script] = field(default_factory=dict)
    _keeper: LeaseKeeper | None = None
    _settling: LeaseHandle | None = None
    _settle_lock: threading.Lock = field(default_factory=threading.Lock)
    _settle_warned_at: float = 0.0

    def script(self, source: str) -> Script:
        """``source`` registered on this client (EVALSHA; loaded again after a restart)."""
        found = self._scripts.get(source)
        if found is None:
            found = self._scripts[source] = self.client.register_script(source)
        return found

    def run(self, source: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script in one round trip."""
        if self.pinned is not None:
            return self.pinned.run(
                source, keys, args, busy=lambda: self.script(source)(keys=keys, args=args)
            )
        return self.script(source)(keys=keys, args=args)

    def send(self, sent: Sent) -> bool:
        """Send ``sent`` on the pinned connection without waiting for its reply; False
        (nothing sent) if another thread is using that connection right now.

        The reply is read by the next script this process runs (one wait for both), or by
        the lease thread ``SETTLE_AFTER_S`` later if none comes first; on a connection
        error the lease thread keeps sending it again until ``sent.give_up_at``.

        Raises:
            redis.RedisError: it could not be written now (it stays queued).
        """
        assert self.pinned is not None, "send() needs the app's pinned connection"
        with self._settle_lock:
            if self._settling is None:
                self._settling = self.keeper.keep(
                    self._settle,
                    ttl_s=3 * SETTLE_AFTER_S,
                    first_s=SETTLE_AFTER_S,
                    what="unread replies (idempotency completions sent without waiting)",
                )
            return self.pinned.send(sent, if_free=True)

    def _settle(self) -> bool:
        """Lease thread: read unread replies; let the thread forget us once there are none."""
        assert self.pinned is not None
        with self._settle_lock:
            if not self.pinned.pending() and self._settling is not None:
                self.keeper.drop(self._settling)
                self._settling = None
                return True
        try:
            self.pinned.settle()
        except redis.RedisError as exc:  # tried again at the next interval
            now = time.monotonic()
            self.pinned.give_up(now, exc)
            if now >= self._settle_warned_at + _SETTLE_WARN_EVERY_S:
                self._settle_warned_at = now
                logger.warning(
                    "celery_kit: %d kit command(s) sent without waiting are not confirmed"
                    " yet (%s); sending them again",
                    self.pinned.pending(),
                    exc,
                )
            return True
        self._settle_warned_at = 0.0
        return True

    @property
    def keeper(self) -> LeaseKeeper:
        """This process's lease keeper (one daemon thread, started on first use)."""
        if self._keeper is None:
            self._keeper = LeaseKeeper(name=f"celery-kit-leases-{self.keys.prefix}")
        return self._keeper


def kit_redis(app: Celery) -> KitRedis:
    """The kit's Redis for ``app`` in this process, created on first use.

    Raises:
        ConfigError: the app was not built by ``make_app`` or has no Redis (see
            :func:`redis_url`).
    """
    state = state_of(app)
    found = state.get(KitRedis)
    if found is not None and found.pid == os.getpid():
        return found
    settings = state.settings
    client = make_client(redis_url(settings), settings)
    made = KitRedis(client=client, keys=keys_of(settings), pinned=ScriptConn(client))
    # Two threads racing here build two clients; the loser's is dropped (harmless).
    return state.put(made)


def resources(
    app: Celery | None, *, client: redis.Redis | None = None, key_prefix: str | None = None
) -> KitRedis:
    """Resolve the ``app=``/``client=``/``key_prefix=`` arguments every helper accepts.

    ``client`` wins over the app's lazy client; the key prefix comes from ``key_prefix``,
    else the app's settings, else ``celery_kit``.

    Raises:
        ConfigError: neither an app nor a client was given.
    """
    if client is None:
        if app is None:
            raise ConfigError("pass app= (a make_app() app) or client= (a redis.Redis)")
        found = kit_redis(app)
        if key_prefix is None or key_prefix == found.keys.prefix:
            return found
        return KitRedis(client=found.client, keys=Keys(key_prefix))
    if key_prefix is None and app is not None:
        return KitRedis(client=client, keys=keys_of(settings_of(app)))
    return KitRedis(client=client, keys=Keys(key_prefix or "celery_kit"))
