"""``KitState``: the one per-app object of celery_kit, and ``settings_of(app)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from celery_kit.config.settings import Settings
from celery_kit.exceptions import ConfigError

if TYPE_CHECKING:
    from celery import Celery

__all__ = [
    "COUNTS_OWN_RUNS",
    "HardTimeoutHook",
    "KitState",
    "PublishHook",
    "RunCounter",
    "SentHook",
    "SkipHook",
    "attach_state",
    "find_state",
    "settings_of",
    "state_of",
]

#: Attribute on the app holding its :class:`KitState` (no module-level registry: two apps in
#: one process never share state).
_ATTR = "_celery_kit_state"

T = TypeVar("T")
#: Class attribute (true) of task classes that call ``KitState.run_counter`` themselves.
COUNTS_OWN_RUNS = "_kit_counts_own_runs"
#: Called after every task message is handed to the broker: ``(task name, queue name)``.
SentHook = Callable[[str, str], None]
#: Called when a periodic run is skipped because its entry's previous run still runs:
#: ``(entry name, task name)``.
SkipHook = Callable[[str, str], None]
#: Called before every task message is published (in the publishing process).
PublishHook = Callable[[], None]
#: Called in the worker's main process when a task's pool process is killed at its hard
#: time limit: ``(worker request, limit in seconds)``.
HardTimeoutHook = Callable[[Any, float], None]


class RunCounter(Protocol):
    """Counts the runs of ``KitTask`` tasks without Celery signals (the metrics set one).

    ``KitTask.__call__`` calls ``started`` where Celery would send ``task_prerun`` and
    ``succeeded`` with its result where Celery sends ``task_success`` (``on_success``):
    Celery sends a signal to every task once it has one receiver, so the kit's own tasks
    are counted directly and only other tasks through receivers.
    """

    def started(self, task: Any, request: Any) -> Any:
        """A run starts (``request`` is on the task's stack); returns a token for
        ``succeeded``, or ``None`` if this run is not counted."""

    def succeeded(self, task: Any, token: Any) -> None:
        """The run of ``token`` returned and its result was stored."""


@dataclass(eq=False)
class KitState:
    """Everything the kit keeps for one app, created by ``make_app`` (``build_app``).

    ``settings`` is fixed when the app is built. The other parts belong to the package
    that makes them and are created on first use, keyed by their type, so this module
    imports none of them: ``coordination.client.kit_redis`` keeps its ``KitRedis`` here
    (per process), ``topology.priority.priority_map`` its ``PriorityMap``, and
    ``observability.metrics`` its ``MetricsState``. ``sent_hooks`` run after each publish
    (the metrics ``sent`` counter registers one), ``overlap_skip_hooks`` when a periodic
    run is skipped (``tasks.overlap``; the metrics count it), ``before_publish_hooks``
    before a publish and ``hard_timeout_hooks`` when a task is killed at its hard time
    limit (tracing registers both: lower layers call up through them); ``run_counter``
    counts each ``KitTask`` run (the metrics set it).
    """

    settings: Settings
    sent_hooks: list[SentHook] = field(default_factory=list)
    overlap_skip_hooks: list[SkipHook] = field(default_factory=list)
    before_publish_hooks: list[PublishHook] = field(default_factory=list)
    hard_timeout_hooks: list[HardTimeoutHook] = field(default_factory=list)
    #: Counts each ``KitTask`` run (``None``: metrics off).
    run_counter: RunCounter | None = None
    _parts: dict[type[Any], Any] = field(default_factory=dict)

    def get(self, kind: type[T]) -> T | None:
        """The part of type ``kind``, or ``None`` if none was stored yet."""
        found = self._parts.get(kind)
        return found if isinstance(found, kind) else None

    def put(self, part: T) -> T:
        """Store ``part`` under its own type (replacing an older one) and return it."""
        self._parts[type(part)] = part
        return part


def attach_state(app: Celery, settings: Settings) -> KitState:
    """Give ``app`` a fresh :class:`KitState` for ``settings`` (``build_app`` only)."""
    state = KitState(settings)
    setattr(app, _ATTR, state)
    return state


def find_state(app: Any) -> KitState | None:
    """The app's :class:`KitState`, or ``None`` for an app not built by ``make_app``."""
    found = getattr(app, _ATTR, None)
    return found if isinstance(found, KitState) else None


def state_of(app: Celery) -> KitState:
    """The app's :class:`KitState`.

    Raises:
        ConfigError: the app was not built by ``make_app``.
    """
    found = find_state(app)
    if found is None:
        raise ConfigError(
            f"app {app.main!r} was not built by celery_kit.make_app(); build it with"
            " make_app() to use kit features"
        )
    return found


def settings_of(app: Celery) -> Settings:
    """The ``Settings`` an app was built from.

    Raises:
        ConfigError: the app was not built by ``make_app``.
    """
    return state_of(app).settings
