"""The publish path: the kit's AMQP class and its one sender wrapper.

The kit's AMQP class (Celery's ``amqp=`` extension point) sees every outgoing task
message, whichever API sent it (``delay``, ``apply_async``, ``send_task``, canvas,
``retry``). Before serializing it refuses delays the broker would redeliver in a loop
(two comparisons when the message has no countdown/ETA); its sender wrapper then resolves
the queue once, translates the kit priority for the broker, stamps the publish time and
runs the app's sent hooks (the metrics ``sent`` counter).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from celery.app.amqp import AMQP

from celery_kit.config.delays import DUE_AT_HEADER
from celery_kit.exceptions import CountdownTooLongError
from celery_kit.state import find_state
from celery_kit.topology.delays import delay_route
from celery_kit.topology.priority import priority_map

if TYPE_CHECKING:
    from celery import Celery

__all__ = [
    "PUBLISHED_AT_HEADER",
    "KitAMQP",
    "canvas_delays",
    "check_canvas",
    "check_delay",
    "wrap_sender",
]

#: Message options under which Celery embeds the rest of a canvas in a task message.
_EMBEDDED = ("link", "link_error", "callbacks", "errbacks", "chain", "chord")

#: ``as_task_v2``'s parameters in Celery's own order (read from the installed Celery, so
#: a release that reorders them moves the positions with it; one that drops a name the
#: kit reads fails here, at import, instead of checking the wrong argument).
_PARAMS: tuple[str, ...] = tuple(inspect.signature(AMQP.as_task_v2).parameters)[1:]
_COUNTDOWN_AT, _ETA_AT = _PARAMS.index("countdown"), _PARAMS.index("eta")
_CHORD_AT, _CALLBACKS_AT = _PARAMS.index("chord"), _PARAMS.index("callbacks")
_ERRBACKS_AT = _PARAMS.index("errbacks")
_CHAIN_AT = _PARAMS.index("chain")
#: Celery's ``send_task`` passes at least this many arguments positionally.
_POSITIONAL = max(_COUNTDOWN_AT, _ETA_AT, _CHORD_AT, _CALLBACKS_AT, _ERRBACKS_AT, _CHAIN_AT) + 1

logger = logging.getLogger(__name__)

#: Remembered (queue, priority) translations per app before the memo starts over.
_TRANSLATED_MAX = 1024
_UNSEEN = object()

#: Message header holding the publish time (epoch seconds) the kit stamps on every task
#: message; Celery's protocol carries none. Queue wait times and oldest-message ages read it.
PUBLISHED_AT_HEADER = "kit_published_at"


def check_delay(
    name: str,
    *,
    countdown: float | None,
    eta: datetime | str | None,
    max_countdown_s: float,
    now: datetime | None = None,
    setting: str = "tasks.max_countdown_s",
) -> None:
    """Raise :class:`CountdownTooLongError` if the message's delay exceeds the bound.

    ``setting`` names the bound: ``tasks.max_countdown_s`` (the worker holds the message:
    the redelivery budget) or ``delays.max_delay_s`` (the delay set holds long delays: a
    sanity bound). Callers take both from :func:`~celery_kit.topology.delays.delay_route`,
    the one place that decides which applies.
    """
    if countdown is None and eta is None:
        return
    delay = float(countdown) if countdown is not None else 0.0
    if eta is not None:
        when = datetime.fromisoformat(eta) if isinstance(eta, str) else eta
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        delay = max(delay, (when - (now or datetime.now(timezone.utc))).total_seconds())
    if delay > max_countdown_s and setting == "delays.max_delay_s":
        raise CountdownTooLongError(
            f"task {name!r}: a delay of {delay:g} s exceeds delays.max_delay_s"
            f" ({max_countdown_s:g} s), the sanity bound on countdowns/ETAs (a unit mix-up,"
            " e.g. milliseconds for seconds, is the usual cause). Fix the countdown, or"
            " raise delays.max_delay_s."
        )
    if delay > max_countdown_s:
        raise CountdownTooLongError(
            f"task {name!r}: a delay of {delay:g} s exceeds tasks.max_countdown_s"
            f" ({max_countdown_s:g} s). Celery keeps a delayed message unacknowledged in the"
            " worker until it runs, and the broker would redeliver it (Redis visibility"
            " timeout) or drop the channel (RabbitMQ consumer_timeout) in a loop. Raise"
            " tasks.max_countdown_s (the visibility timeout grows with it), or schedule"
            " the work with beat."
        )


def canvas_delays(
    node: Any, options: Mapping[str, Any] | None = None
) -> Iterator[tuple[str, Any, Any]]:
    """Every ``(task name, countdown, eta)`` in a signature and all it carries.

    Walks chain links, group members, chord header and body, ``link``/``link_error``
    callbacks and the embedded ``chain``/``chord`` of a message, at any depth; ``node`` may
    be a ``Signature``, its dict form, or a list of them. ``options`` are call-time
    options that apply to ``node`` itself (``apply_async(countdown=…)``).
    """
    if isinstance(node, (list, tuple)):
        for each in node:
            yield from canvas_delays(each)
        return
    if not isinstance(node, Mapping):
        return
    own = node.get("options") or {}
    if options:
        own = {**own, **options}
    if own.get("countdown") is not None or own.get("eta") is not None:
        name = str(node.get("task") or node.get("subtask_type") or "canvas")
        yield name, own.get("countdown"), own.get("eta")
    for key in _EMBEDDED:
        if own.get(key):
            yield from canvas_delays(own[key])
    kwargs = node.get("kwargs") or {}
    kind = node.get("subtask_type")
    if kind in ("group", "chain"):
        yield from canvas_delays(kwargs.get("tasks"))
    elif kind == "chord":
        yield from canvas_delays(kwargs.get("header"))
        yield from canvas_delays(kwargs.get("body"))


def check_canvas(
    node: Any,
    *,
    max_countdown_s: float,
    options: Mapping[str, Any] | None = None,
    setting: str = "tasks.max_countdown_s",
) -> None:
    """:func:`check_delay` for every delay anywhere in ``node`` (see :func:`canvas_delays`).

    Raises:
        CountdownTooLongError: the first too-long countdown/ETA found; nothing was sent.
    """
    for name, countdown, eta in canvas_delays(node, options):
        check_delay(
            name, countdown=countdown, eta=eta, max_countdown_s=max_countdown_s, setting=setting
        )


def _param(args: tuple[Any, ...], options: Mapping[str, Any], name: str) -> Any:
    at = _PARAMS.index(name)
    return args[at] if len(args) > at else options.get(name)


def wrap_sender(app: Celery, send: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap Celery's ``send_task_message``: the kit's one per-message publish step.

    Celery merges per-call options, task attributes and the router's answer into the
    keyword ``priority`` before this point (``celery/app/base.py: send_task``), so this
    is the one place that sees the final value for every publishing API. The publish
    stamp is always written; the sent hooks run after the broker took the message.
    """
    default_queue = str(app.conf.task_default_queue)
    state = find_state(app)
    hooks = state.sent_hooks if state is not None else []
    before = state.before_publish_hooks if state is not None else []
    route = delay_route(app)
    # broker priority per (queue, kit priority): the map is fixed once built, and the
    # pairs an app publishes are few (bounded anyway: dynamic queue names)
    translated: dict[tuple[str | None, int | None], int | None] = {}

    def to_broker(key: tuple[str | None, Any]) -> int | None:
        broker = priority_map(app).to_broker(*key)
        if key[1] is None or type(key[1]) is int:  # not bool (== 1) nor enums
            if len(translated) >= _TRANSLATED_MAX:
                translated.clear()
            translated[key] = broker
        return broker

    def send_task_message(
        producer: Any,
        name: str,
        message: Any,
        exchange: Any = None,
        routing_key: str | None = None,
        queue: Any = None,
        **options: Any,
    ) -> Any:
        for prepare in before:  # e.g. tracing set up in this process (it raises nothing)
            prepare()
        qname = queue if isinstance(queue, str) else getattr(queue, "name", None)
        target = default_queue if qname is None and exchange is None else qname
        priority = options.get("priority")
        key = (target or routing_key, priority)
        broker = translated.get(key, _UNSEEN)
        if broker is _UNSEEN or (priority is not None and type(priority) is not int):
            broker = to_broker(key)
        if broker is None:
            options.pop("priority", None)
        else:
            options["priority"] = broker
        now = time.time()
        headers = message.headers
        headers[PUBLISHED_AT_HEADER] = now
        extra = options.get("headers")
        if extra is None and not route.enabled:  # nothing to stamp or make consistent
            headers.pop(DUE_AT_HEADER, None)
        else:
            extra = route.stamp(headers, extra)
            if extra and PUBLISHED_AT_HEADER in extra:  # a retry copies its request's headers
                extra = {**extra, PUBLISHED_AT_HEADER: now}
            if extra is not None:
                options["headers"] = extra
        result = send(producer, name, message, exchange, routing_key, queue, **options)
        if hooks:
            counted = qname or routing_key or (default_queue if exchange is None else str(exchange))
            for hook in hooks:
                try:
                    hook(name, counted)
                except Exception:  # an observer never fails a publish that succeeded
                    logger.exception("celery_kit: a sent hook failed for %s", name)
        return result

    return send_task_message


class KitAMQP(AMQP):
    """Celery's AMQP helper plus the kit's publish-time checks and sender wrapper."""

    def as_task_v2(self, *args: Any, **options: Any) -> Any:
        """Celery's ``as_task_v2`` after the delay check of the message and its canvas.

        Celery's ``send_task`` passes every argument up to ``chain`` positionally; the
        arguments are read by position (:data:`_PARAMS`), not re-bound, so a message
        without a delay or a canvas costs a few index reads.
        """
        if len(args) >= _POSITIONAL:  # the call Celery's send_task makes
            countdown, eta = args[_COUNTDOWN_AT], args[_ETA_AT]
            nested = (args[_CHORD_AT], args[_CALLBACKS_AT], args[_ERRBACKS_AT])
            chain = args[_CHAIN_AT]
        else:  # called with keywords (or a short tuple)
            countdown, eta, chord, callbacks, errbacks, chain = (
                _param(args, options, name)
                for name in ("countdown", "eta", "chord", "callbacks", "errbacks", "chain")
            )
            nested = (chord, callbacks, errbacks)
        if countdown is not None or eta is not None or chain or any(nested):
            name = _param(args, options, "name")
            self._check_delays(name, countdown, eta, [*nested, chain])
        return super().as_task_v2(*args, **options)

    def _check_delays(self, name: str, countdown: Any, eta: Any, canvas: list[Any]) -> None:
        # one bound for the message and the canvas it carries (delay_route decides which)
        route = delay_route(self.app)
        limit, setting = route.max_delay_s, route.bound_setting
        if countdown is not None or eta is not None:
            check_delay(name, countdown=countdown, eta=eta, max_countdown_s=limit, setting=setting)
        if any(canvas):  # the rest of the canvas rides along
            check_canvas(canvas, max_countdown_s=limit, setting=setting)

    @cached_property
    def send_task_message(self) -> Any:
        """Celery's sender inside the kit's :func:`wrap_sender`."""
        # _create_task_sender is what Celery's own cached property calls (celery/app/amqp.py)
        sender = self._create_task_sender()  # type: ignore[attr-defined]
        return wrap_sender(self.app, sender)
