"""A global token bucket on Redis: ``rate="100/m"`` across every worker and process.

Celery's own ``rate_limit`` is per worker process pool. Here one atomic Lua script (one
round trip, Redis server clock, so worker clocks do not matter) refills the bucket, takes
a token or, when it is empty, hands out a *spread hint*: the time of the next free slot
after all callers already told to wait, so deferred tasks come back one slot apart
instead of as a herd. The hint admits nobody: on its return the task takes a token like
any other, so in any window of W seconds at most ``burst + rate x W`` tasks start.

What happens when things die: a worker that dies holds no tokens (nothing to release);
Redis unreachable: :class:`RedisUnavailableError` (a task defers without running).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis

from celery_kit.coordination import client as redis_client
from celery_kit.coordination.client import KitRedis
from celery_kit.exceptions import RedisUnavailableError

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["Rate", "RateLimiter"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*([smhd])\s*$")

# KEYS[1] bucket; ARGV tokens_per_ms, capacity, max_wait_ms -> 0 (admitted) | wait ms
_TAKE = """
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local rate, cap, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 't', 'ts', 'n')
local tokens, ts, nf = tonumber(v[1]), tonumber(v[2]), tonumber(v[3]) or 0
if not tokens then tokens, ts = cap, now end
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  local slot = math.max(now + math.ceil((1 - tokens) / rate), nf)
  slot = math.min(slot, now + max_wait)
  nf = slot + math.ceil(1 / rate)
  wait = slot - now
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', now, 'n', nf)
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate) + math.max(0, nf - now) + 1000)
return wait
"""


@dataclass(frozen=True)
class Rate:
    """``count`` tasks per ``period_s`` seconds."""

    count: float
    period_s: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        """Parse ``"100/m"``, ``"5/s"``, ``"10/30s"``, ``"1000/h"``, ``"2/d"``.

        Raises:
            ValueError: the text is not ``<count>/[<n>]<s|m|h|d>`` with a positive count.
        """
        match = _RATE.match(text)
        if match is None or float(match.group(1)) <= 0:
            raise ValueError(
                f"rate {text!r} is not <count>/<unit> with unit s, m, h or d (e.g. '100/m',"
                " '10/30s')"
            )
        every = float(match.group(2) or 1) * _UNITS[match.group(3)]
        if every <= 0:
            raise ValueError(f"rate {text!r}: the period must be positive")
        return cls(float(match.group(1)), every)

    @property
    def per_s(self) -> float:
        """Tasks per second."""
        return self.count / self.period_s


class RateLimiter:
    """A token bucket shared by every process that uses the same name and Redis.

    Args:
        name: bucket name (the key is ``<prefix>:rate:<name>``).
        rate: ``Rate`` or text such as ``"100/m"``.
        burst: bucket size, i.e. how many may start at once after a quiet period
            (default: the rate's count, at least 1).
        app, client, key_prefix, resources: where the bucket lives (see ``Lock``).
    """

    def __init__(
        self,
        name: str,
        rate: Rate | str,
        *,
        burst: float | None = None,
        app: Celery | None = None,
        client: redis.Redis | None = None,
        key_prefix: str | None = None,
        resources: KitRedis | None = None,
    ) -> None:
        self.name = name
        self.rate = Rate.parse(rate) if isinstance(rate, str) else rate
        self.burst = float(burst) if burst is not None else max(1.0, self.rate.count)
        if self.burst < 1:
            raise ValueError("burst must be >= 1 (a bucket that cannot hold a token admits no one)")
        self._app, self._client, self._prefix = app, client, key_prefix
        self._kr: KitRedis | None = resources

    def _resources(self) -> KitRedis:
        if self._kr is None:
            self._kr = redis_client.resources(
                self._app, client=self._client, key_prefix=self._prefix
            )
        return self._kr

    def try_acquire(self, *, max_wait_s: float) -> float:
        """Take a token (one round trip).

        Args:
            max_wait_s: the longest wait hint to hand out (a task's longest countdown).

        Returns:
            0.0 if admitted, else seconds until this caller's slot (a hint: try again then).

        Raises:
            RedisUnavailableError: Redis did not answer.
        """
        kr = self._resources()
        args = [repr(self.rate.per_s / 1000.0), repr(self.burst), max(1, int(max_wait_s * 1000))]
        try:
            wait_ms = kr.run(_TAKE, [kr.keys.rate(self.name)], args)
        except redis.RedisError as exc:
            raise RedisUnavailableError(f"rate limit {self.name!r}: {exc}") from exc
        return int(wait_ms) / 1000.0
