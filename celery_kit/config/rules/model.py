"""What a rule looks at (``Subject``), what it says (``Finding``) and what it is (``Rule``).

Rules see effective Celery values only (a mapping of Celery setting names to values, as
``app.conf`` resolves them), so the same rule judges a ``make_app`` app, a hand-built
``Celery()`` and a Django project. This module imports nothing from the kit.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from celery_kit.config.celery_keys import CeleryKeys as K

__all__ = ["Evidence", "Finding", "Rule", "Scope", "Severity", "Subject", "TaskInfo"]


class Severity(str, enum.Enum):
    """How bad a finding is; ordered ``info < warning < error``."""

    #: Will lose or duplicate work, or opens a hole.
    ERROR = "error"
    #: Costs reliability or money.
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """0 for info, 1 for warning, 2 for error."""
        return ("info", "warning", "error").index(self.value)


class Scope(str, enum.Enum):
    """What a rule needs to run."""

    SETTINGS = "settings"  #: the effective configuration only
    TASKS = "tasks"  #: the registered tasks (task modules imported)
    LIVE = "live"  #: a connection to the broker (``doctor --live``)


@dataclass(frozen=True)
class TaskInfo:
    """What the rules need to know about one registered task (no Celery objects)."""

    name: str
    #: Attributes as the task resolves them (task option, else app setting).
    acks_late: bool = False
    reject_on_worker_lost: bool | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    ignore_result: bool = False
    max_retries: int | None = 3
    autoretry_for: tuple[str, ...] = ()
    retry_backoff: bool = False
    retry_backoff_max: float = 600.0
    default_retry_delay: float = 180.0
    retry_kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: Routing attributes given on the task itself (``@app.task(queue=...)``).
    routing_attributes: Mapping[str, Any] = field(default_factory=dict)
    #: Where the task is defined (``module.function``), for evidence.
    location: str = ""
    #: Its body calls ``self.retry()`` but the task is not bound (``None``: not read).
    unbound_retry: bool | None = None
    #: ``(file, line)`` of the task function, when its source was read (SARIF regions).
    source: tuple[str, int] | None = None


@dataclass(frozen=True)
class Subject:
    """One app as the rules see it.

    Attributes:
        conf: every Celery setting (lower-case name) with its effective value.
        origins: where a value came from, for the settings whose origin is known.
        tasks: the registered tasks, or ``None`` when task modules were not imported.
        celery_version: ``(major, minor)`` of the Celery that will run the app.
        queue_arguments: declared queue name -> its ``queue_arguments`` (from task_queues).
        routed_queues: queue names that routes or task attributes send to.
        kit: the app was built by ``make_app`` (fixes then name kit settings).
        max_prefetch: the largest prefetch multiplier any worker runs with (default: the
            app's ``worker_prefetch_multiplier``).
        extra_unacked_s: time a delivery may stay unacknowledged besides running and
            waiting behind prefetched work (longest allowed countdown/retry delay, margin).
        unsafe_content: serializers/content types to refuse (``None``: pickle and yaml).
    """

    conf: Mapping[str, Any]
    origins: Mapping[str, str] = field(default_factory=dict)
    tasks: tuple[TaskInfo, ...] | None = None
    celery_version: tuple[int, int] = (5, 7)
    queue_arguments: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    routed_queues: frozenset[str] = frozenset()
    kit: bool = False
    max_prefetch: int | None = None
    extra_unacked_s: float = 0.0
    unsafe_content: frozenset[str] | None = None

    def get(self, key: str, default: Any = None) -> Any:
        """The effective value of Celery setting ``key``."""
        return self.conf.get(key, default)

    def origin(self, key: str) -> str:
        """Where ``key``'s value came from ("Celery default" when nobody set it)."""
        return self.origins.get(key, "Celery default")

    @property
    def prefetch(self) -> int:
        """Messages each pool process may hold unacknowledged (at least 1)."""
        given = self.max_prefetch or self.get(K.worker_prefetch_multiplier) or 1
        return max(1, int(given))

    @property
    def broker_scheme(self) -> str:
        """``redis``, ``amqp``, … (``rediss``/``sentinel`` count as redis; ``''`` if unset)."""
        url = str(self.get("broker_url") or self.get(K.broker_transport) or "")
        scheme = url.split(";")[0].split("://")[0].lower().split("+")[0]
        return {"rediss": "redis", "sentinel": "redis", "pyamqp": "amqp", "amqps": "amqp"}.get(
            scheme, scheme
        )

    @property
    def uses_redis(self) -> bool:
        """The broker is Redis (where the visibility timeout applies)."""
        return self.broker_scheme == "redis"

    @property
    def uses_amqp(self) -> bool:
        """The broker is RabbitMQ."""
        return self.broker_scheme == "amqp"


@dataclass(frozen=True)
class Evidence:
    """One effective value a finding rests on."""

    key: str  #: Celery setting name or ``task <name>.<attribute>``
    value: Any
    origin: str


@dataclass(frozen=True)
class Finding:
    """One problem found by one rule."""

    rule: Rule
    message: str  #: what is wrong here, with the numbers
    evidence: tuple[Evidence, ...] = ()
    task: str | None = None  #: the task concerned, if the finding is about one

    @property
    def severity(self) -> Severity:
        """The rule's severity."""
        return self.rule.severity


#: A check returns ``(message, evidence, task)`` triples; the engine wraps them.
Hit = tuple[str, tuple[Evidence, ...], "str | None"]
Check = Callable[[Subject], Iterable[Hit]]


@dataclass(frozen=True)
class Rule:
    """A rule: its stable id, its severity, why it matters, and the fix.

    Attributes:
        id: stable identifier (kebab-case); used by ``--ignore``, SARIF and the docs.
        severity: see :class:`Severity`.
        title: one line.
        why: one or two sentences: what goes wrong in production.
        source: URL of the Celery documentation or issue that backs ``why``.
        fix_celery: the fix in plain Celery settings.
        fix_kit: the fix for an app built by ``make_app``.
        scope: what the rule needs (settings, tasks, a live broker).
        check: the check itself (``None`` for live rules, run by the doctor's probes).
    """

    id: str
    severity: Severity
    title: str
    why: str
    source: str
    fix_celery: str
    fix_kit: str
    scope: Scope = Scope.SETTINGS
    check: Check | None = field(default=None, compare=False, repr=False)

    def finding(
        self, message: str, evidence: Iterable[Evidence] = (), task: str | None = None
    ) -> Finding:
        """A finding of this rule."""
        return Finding(self, message, tuple(evidence), task)
