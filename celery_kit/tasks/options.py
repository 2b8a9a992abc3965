"""Kit task options: their names, their checks, and the per-class plan built from them.

Options are plain class attributes (``@app.task(lock="report:{report_id}")`` puts them on
the generated class, like every Celery option). When a task class is created they are
checked: a misspelled kit option (``idempotency_kye=``) or a malformed value raises
:class:`TaskOptionError` there, like a misspelled dramatiq actor option. Unknown names
that resemble no known option are left alone, as Celery does (custom attributes).
"""

from __future__ import annotations

import difflib
import inspect
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from celery import Task

from celery_kit.coordination.locks import OnBusy
from celery_kit.coordination.ratelimit import Rate
from celery_kit.exceptions import TaskOptionError

__all__ = ["KIT_OPTIONS", "KeySpec", "Plan", "build_plan"]

#: Every kit task option and what it takes.
KIT_OPTIONS: Mapping[str, str] = {
    "idempotency_key": "a key template such as 'charge:{order_id}', or a function(*args, **kwargs)",
    "idempotency_lease_s": "seconds (default idempotency.lease_s)",
    "idempotency_ttl_s": "seconds a result is kept (default idempotency.result_ttl_s)",
    "dedupe_enqueue": "bool (opt-in): publishing a pending key returns the pending task",
    "lock": "a lock name template such as 'report:{report_id}', or a function",
    "lock_ttl_s": "seconds (default locks.ttl_s; renewed while the task runs)",
    "lock_on_busy": "'skip', 'retry' or 'fail'",
    "rate": "a global rate such as '100/m', '5/s', '10/30s'",
    "rate_key": "bucket name template (default: the task name)",
    "rate_burst": "tokens the bucket holds (default: the rate's count)",
    "dead_letter": "bool: failures go to the dead-letter store",
    "retry_for": "tuple of exception classes retried with backoff",
    "permanent_for": "tuple of exception classes never retried",
    "backoff_base_s": "seconds (default retry.backoff_base_s)",
    "backoff_max_s": "seconds (capped by tasks.retry_backoff_max_s)",
}
#: Celery options read with getattr() only, so absent from ``dir(Task)``.
_CELERY_EXTRA = frozenset(
    {
        "autoretry_for",
        "dont_autoretry_for",
        "retry_kwargs",
        "retry_backoff",
        "retry_backoff_max",
        "retry_jitter",
        "_decorated",
        "_dump_pydantic_arguments",
        "_decorated_fun",
        "__header__",
        "__wrapped__",
    }
)
_KIT_PREFIXES = ("idempotency", "dedupe", "lock_", "rate_", "dead_letter", "backoff", "permanent")
_NUMBERS: tuple[str, ...] = (
    "idempotency_lease_s",
    "idempotency_ttl_s",
    "lock_ttl_s",
    "rate_burst",
    "backoff_base_s",
    "backoff_max_s",
)


@dataclass(frozen=True)
class KeySpec:
    """A key made from a task's arguments: a ``str.format`` template or a function."""

    source: str | Callable[..., Any]

    def render(self, bound: Mapping[str, Any], args: tuple[Any, ...], kw: Mapping[str, Any]) -> str:
        """The key for one call (``bound``: arguments by name, defaults applied)."""
        if callable(self.source):
            return str(self.source(*args, **kw))
        return self.source.format_map(bound)


@dataclass(frozen=True)
class Plan:
    """What the kit does around one task class's body (``None`` on the class: nothing)."""

    idempotency: KeySpec | None
    dedupe_enqueue: bool
    lock: KeySpec | None
    lock_on_busy: OnBusy
    rate: Rate | None
    rate_key: KeySpec | None
    retry: bool
    dead_letter: bool

    @property
    def needs_arguments(self) -> bool:
        """True when a key is rendered from the call's arguments."""
        specs = (self.idempotency, self.lock, self.rate_key)
        return any(s is not None and not callable(s.source) for s in specs)


def _known_names(cls: type) -> set[str]:
    names = set(_CELERY_EXTRA) | set(KIT_OPTIONS)
    for base in cls.__mro__[1:]:
        names.update(vars(base))
    return names


def check_names(cls: type) -> None:
    """Refuse option names that look like a misspelled kit (or Celery) option."""
    decorated = bool(vars(cls).get("_decorated"))
    known = _known_names(cls)
    for name in vars(cls):
        if name in known or name.startswith("__"):
            continue
        pool = sorted(known if decorated else KIT_OPTIONS)
        close = difflib.get_close_matches(name, pool, n=1, cutoff=0.8 if decorated else 0.85)
        if close or (decorated and name.startswith(_KIT_PREFIXES)):
            hint = (
                f"did you mean `{close[0]}`?" if close else "kit options: " + ", ".join(KIT_OPTIONS)
            )
            raise TaskOptionError(f"task {_label(cls)}: unknown option `{name}`; {hint}")


def _label(cls: type) -> str:
    return repr(vars(cls).get("name") or cls.__qualname__)


def run_signature(cls: type) -> inspect.Signature | None:
    """Signature of the task's ``run`` as callers pass arguments (without ``self``)."""
    raw = inspect.getattr_static(cls, "run", None)
    if raw is None or raw is inspect.getattr_static(Task, "run"):
        return None
    if isinstance(raw, staticmethod):
        return inspect.signature(raw.__func__)
    signature = inspect.signature(raw)
    params = list(signature.parameters.values())[1:]
    return signature.replace(parameters=params)


def _key_spec(cls: type, option: str, value: Any, sig: inspect.Signature | None) -> KeySpec | None:
    if value is None:
        return None
    if callable(value):
        return KeySpec(value)
    if not isinstance(value, str) or not value:
        raise TaskOptionError(f"task {_label(cls)}: {option} must be {KIT_OPTIONS[option]}")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
    except ValueError as exc:
        raise TaskOptionError(f"task {_label(cls)}: {option}={value!r}: {exc}") from None
    if sig is not None and not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        for name in fields:
            root = name.split(".")[0].split("[")[0]
            if not root or root.isdigit():
                raise TaskOptionError(
                    f"task {_label(cls)}: {option}={value!r}: name the argument ({{order_id}}),"
                    " positional fields are ambiguous"
                )
            if root not in sig.parameters:
                raise TaskOptionError(
                    f"task {_label(cls)}: {option}={value!r} uses {{{root}}}, which is not an"
                    f" argument of the task; arguments: {', '.join(sig.parameters) or 'none'}"
                )
    return KeySpec(value)


def build_plan(cls: type) -> Plan | None:
    """Check ``cls``'s kit options and return its plan (``None`` if it uses none).

    Raises:
        TaskOptionError: an option is misspelled or has a malformed value.
    """
    check_names(cls)

    def get(name: str) -> Any:
        return getattr(cls, name, None)

    for name in _NUMBERS:
        value = get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
        ):
            raise TaskOptionError(
                f"task {_label(cls)}: {name} must be a positive number, got {value!r}"
            )
    for name in ("retry_for", "permanent_for"):
        value = get(name) or ()
        if not isinstance(value, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in value
        ):
            raise TaskOptionError(
                f"task {_label(cls)}: {name} must be a tuple of exception classes, got {value!r}"
            )
    try:
        on_busy = OnBusy(get("lock_on_busy") or OnBusy.RETRY)
    except ValueError:
        raise TaskOptionError(
            f"task {_label(cls)}: lock_on_busy must be 'skip', 'retry' or 'fail', got"
            f" {get('lock_on_busy')!r}"
        ) from None
    rate = None
    if get("rate") is not None:
        try:
            rate = Rate.parse(str(get("rate")))
        except ValueError as exc:
            raise TaskOptionError(f"task {_label(cls)}: {exc}") from None
    sig = run_signature(cls)
    plan = Plan(
        idempotency=_key_spec(cls, "idempotency_key", get("idempotency_key"), sig),
        dedupe_enqueue=bool(get("dedupe_enqueue")),
        lock=_key_spec(cls, "lock", get("lock"), sig),
        lock_on_busy=on_busy,
        rate=rate,
        rate_key=_key_spec(cls, "rate_key", get("rate_key"), sig),
        retry=bool(get("retry_for")),
        dead_letter=bool(get("dead_letter")),
    )
    if plan.rate_key is not None and plan.rate is None:
        raise TaskOptionError(f"task {_label(cls)}: rate_key needs rate= (e.g. rate='100/m')")
    if not (plan.idempotency or plan.lock or plan.rate or plan.retry or plan.dead_letter):
        return None
    return plan
