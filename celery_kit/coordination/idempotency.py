"""Idempotency keys: a task body's effect happens once per key.

State of one key is one Redis hash, changed only by the Lua scripts below (atomic, one
round trip each): ``s`` (``r`` running / ``d`` done), ``o`` (owner token of the running
execution), ``t`` (its task id), ``r`` (the JSON result once done), ``p`` (task id
reserved at publish time). The success path waits for one round trip, the claim; the
completion is written without waiting for its reply (``celery_kit.tasks.completion``),
and is safe to resend: the same token answers "recorded" again.

What happens when things die:

* duplicate delivery while a run holds the claim: the duplicate does not run; it polls
  the claim briefly, then is deferred with a short capped countdown, and returns the
  stored result soon after the holder finished (``celery_kit.tasks.duplicates``);
* run finished: later deliveries return the stored result (``result_ttl_s``);
* body raised: the claim is released at once, so a retry can claim it;
* holder SIGKILLed (pool child or whole worker): nobody renews the lease, it expires
  after ``lease_s``, and the next delivery claims the key and runs the body;
* Redis unreachable when claiming: the body does not run; the task is deferred;
* Redis unreachable when recording the result (after the body ran): the task still
  succeeds; the completion is sent again until Redis answers (for a while; then an error
  is logged, the claim expires after the lease and a later duplicate could run the body
  again). The task reports success before Redis confirmed the completion: a pool process
  SIGKILLed in between has already written it, and loses it only if the connection broke
  at that very moment (``celery_kit.tasks.completion``). The guarantee is therefore "at most one
  *successful* completion is recorded per key, and no two runs overlap"; a body that
  crashes after its side effect but before completing runs again (make the effect
  itself idempotent, e.g. with the key as an idempotency token at the payment API).
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass
from typing import Any, Literal

from kombu.utils.json import dumps, loads

from celery_kit.coordination.client import KitRedis
from celery_kit.coordination.pinned import Sent

__all__ = ["Claim", "Outcome", "new_token", "reserve"]

logger = logging.getLogger(__name__)

# KEYS[1] key; ARGV token, lease_ms, task_id -> {"claimed"} | {"done", result} |
# {"busy", pttl_ms, holder_task_id}. Re-entrant for the same token (safe to retry).
_CLAIM = """
local v = redis.call('HMGET', KEYS[1], 's', 'o', 'r', 't')
if v[1] == 'd' then return {'done', v[3] or 'null'} end
if v[1] == 'r' and v[2] ~= ARGV[1] then
  return {'busy', tostring(redis.call('PTTL', KEYS[1])), v[4] or ''}
end
redis.call('HSET', KEYS[1], 's', 'r', 'o', ARGV[1], 't', ARGV[3])
redis.call('HDEL', KEYS[1], 'p')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {'claimed'}
"""

# KEYS[1]; ARGV token, result_json, ttl_ms, task_id -> 1 recorded (also when this token
# already recorded it: safe to resend), 0 another run holds the key or recorded it
_COMPLETE = """
local v = redis.call('HMGET', KEYS[1], 's', 'o', 't')
if v[1] == 'd' then
  if v[2] == ARGV[1] then return 1 end
  return 0
end
if v[1] == 'r' and v[2] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 's', 'd', 'r', ARGV[2], 't', ARGV[4], 'o', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS[1]; ARGV token -> 1 released, 0 not ours
_RELEASE = """
if redis.call('HGET', KEYS[1], 'o') == ARGV[1] and redis.call('HGET', KEYS[1], 's') == 'r'
then redis.call('DEL', KEYS[1]) return 1 end
return 0
"""

# KEYS[1]; ARGV token, lease_ms -> 1 renewed, 0 lost
_RENEW = """
if redis.call('HGET', KEYS[1], 'o') == ARGV[1] and redis.call('HGET', KEYS[1], 's') == 'r'
then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""

# KEYS[1]; ARGV task_id, pending_ms -> "" (publish it) | the task id already pending/running
_RESERVE = """
local v = redis.call('HMGET', KEYS[1], 's', 'p', 't')
if v[1] == 'r' then
  if v[3] == ARGV[1] then return '' end
  return v[3]
end
if v[1] == 'd' then return '' end
if v[2] and v[2] ~= ARGV[1] then return v[2] end
redis.call('HSET', KEYS[1], 'p', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return ''
"""

# KEYS[1]; ARGV task_id -> drop a reservation whose publish failed
_UNRESERVE = """
if redis.call('HGET', KEYS[1], 'p') == ARGV[1] and not redis.call('HGET', KEYS[1], 's') then
  redis.call('DEL', KEYS[1]) return 1 end
return 0
"""


@dataclass(frozen=True)
class Outcome:
    """What a claim found: run the body, return a stored result, or wait."""

    state: Literal["claimed", "done", "busy"]
    result: Any = None
    #: For ``busy``: milliseconds until the holder's lease expires if it stops renewing.
    pttl_ms: int = 0
    #: For ``busy``: task id of the running holder.
    holder: str = ""


_token_pid = 0
_token_prefix = ""
_token_count = itertools.count()


def new_token() -> str:
    """A token unique per execution attempt: 64 random bits per process, then a counter
    (cheaper than a uuid4 per task; a forked child draws its own random part)."""
    global _token_pid, _token_prefix
    if _token_pid != os.getpid():
        _token_pid, _token_prefix = os.getpid(), os.urandom(8).hex()
    return f"{_token_prefix}{next(_token_count):x}"


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class Claim:
    """One execution's claim on one idempotency key (a lease, renewed while it runs).

    Args:
        key: the full Redis key (from ``Keys.idempotency``).
        token: unique per execution attempt (a redelivery of the same task id is
            another attempt, so it cannot take over a live claim).
        kr: the kit's Redis resources.
    """

    key: str
    token: str
    kr: KitRedis

    def claim(self, *, task_id: str, lease_s: float) -> Outcome:
        """Claim the key (1 round trip)."""
        reply = self.kr.run(_CLAIM, [self.key], [self.token, _ms(lease_s), task_id])
        state = _text(reply[0])
        if state == "claimed":
            return Outcome("claimed")
        if state == "done":
            return Outcome("done", result=loads(_text(reply[1])))
        return Outcome("busy", pttl_ms=int(_text(reply[1])), holder=_text(reply[2]))

    def complete(self, result: Any, *, result_ttl_s: float, task_id: str) -> bool:
        """Record success and the result (1 round trip); False if another run holds it."""
        done = self.kr.run(
            _COMPLETE, [self.key], self._complete_args(result, result_ttl_s, task_id)
        )
        return bool(done)

    def completion(self, result: Any, *, result_ttl_s: float, task_id: str) -> Sent:
        """The completion as a :class:`Sent`, for ``kr.pinned.send`` (reply read later;
        its value is what :meth:`complete` returns)."""
        return Sent(_COMPLETE, [self.key], self._complete_args(result, result_ttl_s, task_id))

    def _complete_args(self, result: Any, result_ttl_s: float, task_id: str) -> list[Any]:
        try:
            payload = dumps(result)
        except (TypeError, ValueError):
            logger.warning(
                "celery_kit: result of %s is not JSON; duplicates will get None", self.key
            )
            payload = "null"
        return [self.token, payload, _ms(result_ttl_s), task_id]

    def release(self) -> bool:
        """Give the key back after a failed run (owner-checked)."""
        return bool(self.kr.run(_RELEASE, [self.key], [self.token]))

    def renew(self, lease_s: float) -> bool:
        """Extend the lease (owner-checked); False once the claim is lost."""
        return bool(self.kr.run(_RENEW, [self.key], [self.token, _ms(lease_s)]))


def reserve(kr: KitRedis, key: str, *, task_id: str, pending_ttl_s: float) -> str | None:
    """Enqueue-time de-duplication: reserve ``key`` for ``task_id`` (1 round trip).

    Returns:
        ``None`` if the caller should publish ``task_id``; otherwise the id of the task
        already pending or running for this key (publish nothing).
    """
    found = _text(kr.run(_RESERVE, [key], [task_id, _ms(pending_ttl_s)]))
    return found or None


def unreserve(kr: KitRedis, key: str, *, task_id: str) -> None:
    """Drop ``task_id``'s reservation after its publish failed."""
    kr.run(_UNRESERVE, [key], [task_id])
