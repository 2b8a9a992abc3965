"""The kit's Redis transport: kombu's, with an atomic consume, renewal and prompt restore.

Same keys as kombu's transport. What changes (docs/architecture.md, "Why this consume path"):

- consume: a Lua script pops the first message in priority order AND records it as
  unacknowledged in one server-side step; when nothing is there, the event loop blocks
  in ``BZPOPMIN`` on one wake-up key per queue (publishers and restores add a token), with
  ``wakeup_timeout`` as a fallback for publishers that do not use this transport;
- a thread per consuming channel renews every message the worker holds and restores
  expired ones promptly (:mod:`celery_kit.transport.renewal`);
- the channel keeps its connection parameters, so an ack after a reconnect still works
  (kombu 5.7 raises ``AttributeError: 'NoneType' object has no attribute 'hostname'``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from queue import Empty
from time import monotonic
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads
from redis.exceptions import NoScriptError

from celery_kit.config.delays import DUE_AT_HEADER
from celery_kit.transport import delayed as _delayed
from celery_kit.transport import malformed
from celery_kit.transport import restore as _restore
from celery_kit.transport.qos import KitQoS
from celery_kit.transport.renewal import Keeper
from celery_kit.transport.scripts import ACK, MOVE, POP, put

__all__ = ["Channel", "Transport"]

logger = logging.getLogger(__name__)


class Channel(kombu_redis.Channel):
    """kombu's Redis channel with the kit's consume, ack, publish and restore paths."""

    QoS = KitQoS

    #: Seconds between renewals of the messages this worker holds.
    renewal_interval: float = 15.0
    #: Seconds between checks for expired unacknowledged messages.
    restore_interval: float = 2.0
    #: Longest blocking wait for a wake-up token (a message published without the kit's
    #: transport is noticed within this time).
    wakeup_timeout: int = 1
    #: Most messages restored per check.
    restore_limit: int = 100
    wake_prefix = "_celery_kit.wake."
    malformed_key = "_celery_kit.malformed"
    #: Set by the worker (``celery_kit.tasks.redis_guard``): ``raw_check(item)`` returns a
    #: problem or ``None``; ``on_raw_problem(item, queue, problem)`` dead-letters the item
    #: (``problem`` is ``None`` when the transport found no delivery tag).
    raw_check: Callable[[bytes], Any] | None = None
    on_raw_problem: Callable[[bytes, str, Any], None] | None = None
    #: The delay set (sorted set); empty: messages carrying a due time are refused.
    delay_key = ""

    from_transport_options = (
        *kombu_redis.Channel.from_transport_options,
        "renewal_interval",
        "restore_interval",
        "wakeup_timeout",
        "restore_limit",
        "wake_prefix",
        "malformed_key",
        "delay_key",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._kit_params: dict[bool, dict[str, Any]] = {}
        self._kit_phase = "pop"
        self._kit_popped: list[str] = []
        self._kit_no_ack: set[str] = set()
        self._kit_pop_memo: dict[Any, tuple[list[str], list[Any], list[str]]] = {}
        self._kit_keeper: Any = None
        super().__init__(*args, **kwargs)
        self.brpop_timeout = self.wakeup_timeout
        self._connparams(False)  # remember both parameter sets while the client exists
        self.kit_redis = redis.Redis(connection_pool=self.pool)
        self._pop = self.kit_redis.register_script(POP)
        self._ack = self.kit_redis.register_script(ACK)
        self._move = self.kit_redis.register_script(MOVE)

    # -- connection parameters survive the connection's collection ---------------------

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None and asynchronous in self._kit_params:
            return dict(self._kit_params[asynchronous])
        params = super()._connparams(asynchronous=asynchronous)
        self._kit_params[asynchronous] = dict(params)
        return params

    def key(self, name: str) -> str:
        """``name`` with kombu's ``global_keyprefix`` (scripts get their keys verbatim)."""
        return f"{self.global_keyprefix}{name}"

    def list_key(self, queue: str, message: Any) -> str:
        """The list (priority sub-list) ``message`` goes to in ``queue``."""
        return self.key(self._q_for_pri(queue, self._get_message_priority(message, reverse=False)))

    def wake_key(self, queue: str) -> str:
        """The wake-up key (a sorted set) consumers of ``queue`` block on."""
        return self.key(f"{self.wake_prefix}{queue}")

    # -- consume ------------------------------------------------------------------------

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._kit_no_ack.add(queue)
        else:
            self._kit_no_ack.discard(queue)
        ret = super().basic_consume(queue, no_ack, *args, **kwargs)
        keeper = self._kit_keeper
        consuming = not no_ack and queue not in self._fanout_queues
        if consuming and (keeper is None or not keeper.is_alive()):
            self._kit_keeper = Keeper(self)
            self._kit_keeper.start()
        return ret

    def pop_call(self, queues: list[str]) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of the POP script for ``queues`` (priority order as kombu's BRPOP)."""
        memo = (tuple(queues), frozenset(self._kit_no_ack))
        cached = self._kit_pop_memo.get(memo)
        if cached is None:
            cached = self._kit_pop_memo[memo] = self._pop_call(queues)
        keys, args, self._kit_popped = cached
        return keys, args

    def _pop_call(self, queues: list[str]) -> tuple[list[str], list[Any], list[str]]:
        lists = [(q, self._q_for_pri(q, pri)) for pri in self.priority_steps for q in queues]
        order = {q: i + 1 for i, q in enumerate(queues)}
        keys = [self.key(self.unacked_index_key), self.key(self.unacked_key)]
        keys += [self.key(self.malformed_key), *(self.key(k) for _, k in lists)]
        keys += [self.wake_key(q) for q in queues]
        args: list[Any] = [len(lists), malformed.MALFORMED_MAX]
        for queue, _ in lists:
            args += [order[queue], "0" if queue in self._kit_no_ack else "1", json.dumps(queue)]
        return keys, args, [q for q, _ in lists]

    def _brpop_start(self, timeout: Any = None) -> None:
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        keys, args = self.pop_call(list(queues))
        self._kit_wait = [*(self.wake_key(q) for q in queues), self.wakeup_timeout or 0]
        self._kit_phase = "pop"
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()
        self.client.connection.send_command("EVALSHA", self._pop.sha, len(keys), *keys, *args)

    def _brpop_read(self, **options: Any) -> bool:
        connection = self.client.connection
        phase = self._kit_phase
        try:
            command = "BZPOPMIN" if phase == "wait" else "EVALSHA"
            reply = self.client.parse_response(connection, command, **options)
        except NoScriptError:  # Redis restarted: its script cache is empty
            self._in_poll = None
            self.kit_redis.script_load(POP)
            raise Empty() from None
        except self.connection_errors:
            self._in_poll = None
            connection.disconnect()
            raise
        if phase == "wait" or not reply:
            if phase == "pop" and not self._closing:  # nothing there: block until woken
                self._kit_phase = "wait"
                self._brpop_sent_at = monotonic()
                connection.send_command("BZPOPMIN", *self._kit_wait)
            else:
                self._in_poll = None
                self._flush_brpop_reauth()
            raise Empty()
        self._in_poll = None
        self._flush_brpop_reauth()
        index, item, status = reply[0], reply[1], int(reply[2])
        tag = bytes_to_str(reply[3]) if len(reply) > 3 and reply[3] else None
        queue = self._kit_popped[int(index) - 1]
        problem = self._check_raw(item) if status >= 0 else None
        if status < 0 or problem is not None:
            malformed.refuse(self, item, queue, tag=tag, problem=problem, moved=status < 0)
            raise Empty()
        try:
            payload = loads(bytes_to_str(item))
            if not isinstance(payload["properties"]["delivery_tag"], str):  # kombu needs it
                raise TypeError("delivery tag")
        except (ValueError, TypeError, KeyError):
            malformed.refuse(self, item, queue, tag=tag, problem=None, moved=False)
            raise Empty() from None
        if self._closing:  # recorded, but nobody will run it: put it back now
            _restore.restore_tag(self, payload["properties"]["delivery_tag"], leftmost=False)
            raise Empty()
        self._queue_cycle.rotate(queue)
        self.connection._deliver(payload, queue)
        return True

    def _check_raw(self, item: bytes) -> Any:
        if self.raw_check is None:
            return None
        try:
            return self.raw_check(item)
        except Exception:  # a bug in a check must not take the worker down: deliver it
            logger.exception("raw_check failed; passing the message on")
            return None

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        if no_ack:
            return super().basic_get(queue, no_ack=True, **kwargs)
        keys, args = self.pop_call([queue])
        reply = self._pop(keys=keys, args=args, client=self.kit_redis)
        if not reply or int(reply[2]) < 0:
            return None
        try:
            message = self.Message(loads(bytes_to_str(reply[1])), channel=self)
        except (ValueError, TypeError, KeyError):
            tag = bytes_to_str(reply[3]) if reply[3] else None
            malformed.refuse(self, reply[1], queue, tag=tag, problem=None, moved=False)
            return None
        self.qos.append(message, message.delivery_tag)
        return message

    # -- publish, ack, restore --------------------------------------------------------

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        due = (message.get("headers") or {}).get(DUE_AT_HEADER)
        if due is not None:  # the publish path routed it to the delay set
            if not self.delay_key:
                raise ValueError(
                    f"a message for {queue!r} carries {DUE_AT_HEADER} but this transport has"
                    " no delay_key transport option (build the app with make_app)"
                )
            _delayed.store(self, queue, message, float(due))
            return
        if kwargs.get("_publish_batch") is not None or (self._expires and queue in self._expires):
            super()._put(queue, message, **kwargs)
            return
        from kombu.utils.json import dumps

        # one round trip, the transport's put step (scripts.put; the mover runs the same
        # commands as scripts.PUT)
        with self.kit_redis.pipeline(transaction=False) as pipe:
            put(pipe, self.list_key(queue, message), self.wake_key(queue), dumps(message))
            pipe.execute()

    def ack_tags(self, tags: list[str]) -> None:
        """Forget ``tags`` (one round trip)."""
        if tags:
            keys = [self.key(self.unacked_index_key), self.key(self.unacked_key)]
            self._ack(keys=keys, args=tags, client=self.kit_redis)

    def _restore(self, message: Any, leftmost: bool = False) -> None:
        _restore.restore_tag(self, message.delivery_tag, leftmost=leftmost)

    def close(self) -> None:
        keeper, self._kit_keeper = self._kit_keeper, None
        if keeper is not None:
            keeper.stop()
        super().close()


class Transport(kombu_redis.Transport):
    """Select with ``broker_transport = "celery_kit.transport.redis:Transport"``."""

    Channel = Channel
    implements = kombu_redis.Transport.implements.extend(batch_publish=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        wakeup = self.client.transport_options.get("wakeup_timeout")
        if wakeup is not None:
            self.brpop_timeout = wakeup
