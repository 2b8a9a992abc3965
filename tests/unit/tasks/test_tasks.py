"""KitTask / RetryingTask: option checks at class creation, backoff bounds, HTTP helpers."""

from __future__ import annotations

import random
from typing import Any

import pytest
from celery import Celery, Task

from celery_kit import ConfigError, Settings, make_app
from celery_kit.coordination.locks import OnBusy
from celery_kit.exceptions import TaskOptionError
from celery_kit.tasks import (
    KitTask,
    PermanentError,
    PermanentHTTPError,
    RetryingTask,
    TransientError,
    TransientHTTPError,
    http_error,
    is_transient_status,
)
from celery_kit.tasks.base import kit_task_class
from celery_kit.tasks.checks import check_redis_options
from celery_kit.tasks.options import Plan
from celery_kit.tasks.retry import backoff_s

DEAD = "redis://127.0.0.1:1/0"  # nothing listens: no test here may connect


def app_with(**kwargs: Any) -> Celery:
    return make_app("t", settings=Settings(_environ={}, broker_url=DEAD, **kwargs))


def plan_of(task: Any) -> Plan | None:
    plan: Plan | None = task._kit_plan  # through Celery's lazy proxy
    return plan


def test_make_app_installs_kit_task_as_task_class() -> None:
    app = app_with()

    @app.task(name="t.plain", shared=False)
    def plain() -> int:
        return 1

    assert isinstance(plain, KitTask)
    assert plan_of(plain) is None  # no options: Celery's own path
    assert plain() == 1


def test_kit_options_on_plain_app_task_build_a_plan() -> None:
    app = app_with()

    @app.task(
        name="t.report",
        shared=False,
        idempotency_key="report:{report_id}",
        lock="report:{report_id}",
        lock_on_busy="skip",
        rate="100/m",
    )
    def build(report_id: str, fmt: str = "pdf") -> str:
        return report_id

    plan = plan_of(build)
    assert plan is not None
    assert plan.idempotency is not None
    assert plan.idempotency.source == "report:{report_id}"
    assert plan.lock_on_busy is OnBusy.SKIP
    assert plan.rate is not None
    assert plan.rate.per_s == pytest.approx(100 / 60)
    assert not plan.retry
    assert not plan.dead_letter


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"idempotency_kye": "x"}, "did you mean `idempotency_key`"),
        ({"lok": "x"}, "did you mean `lock`"),
        ({"lock_timeout": 5}, "unknown option `lock_timeout`"),
        ({"rate_limt": "1/s"}, "did you mean `rate_limit`"),
        ({"autoretry_fro": (ValueError,)}, "did you mean `autoretry_for`"),
        ({"idempotency_key": "charge:{order}"}, "{order}, which is not an argument"),
        ({"lock": "job:{0}"}, "positional fields are ambiguous"),
        ({"lock": "job:{order_id"}, "job:{order_id"),
        ({"rate": "fast"}, "is not <count>/<unit>"),
        ({"rate": "10/m", "rate_burst": 0}, "rate_burst must be a positive number"),
        ({"rate_key": "x"}, "rate_key needs rate="),
        ({"lock": "x", "lock_on_busy": "wait"}, "'skip', 'retry' or 'fail'"),
        ({"lock": "x", "lock_ttl_s": -1}, "lock_ttl_s must be a positive number"),
        ({"retry_for": [ValueError]}, "must be a tuple of exception classes"),
        ({"permanent_for": (ValueError, "KeyError")}, "must be a tuple of exception classes"),
    ],
)
def test_bad_kit_options_raise_when_the_task_is_created(
    options: dict[str, Any], message: str
) -> None:
    app = app_with()
    app.finalize()  # a finalized app creates the task class in the decorator itself
    with pytest.raises(TaskOptionError, match=_escaped(message)):

        @app.task(name="t.bad", shared=False, **options)
        def bad(order_id: str) -> None:
            return None


def _escaped(text: str) -> str:
    import re

    return re.escape(text)


def test_bad_option_on_a_lazy_app_raises_on_finalize() -> None:
    app = app_with()

    @app.task(name="t.lazy", shared=False, idempotency_kye="x")
    def lazy(order_id: str) -> None:
        return None

    with pytest.raises(TaskOptionError, match="idempotency_key"):
        app.finalize()


def test_unknown_options_unlike_any_known_one_stay_allowed() -> None:
    app = app_with()

    @app.task(name="t.custom", shared=False, queue="critical", my_team="payments")
    def custom() -> None:
        return None

    assert custom.my_team == "payments"  # Celery semantics: a custom class attribute


def test_key_templates_may_use_kwargs_when_the_task_takes_kwargs() -> None:
    app = app_with()

    @app.task(name="t.kw", shared=False, idempotency_key="k:{anything}")
    def kw(**kwargs: Any) -> None:
        return None

    assert plan_of(kw) is not None


def test_retrying_task_policy_is_immutable_class_attributes() -> None:
    app = app_with()

    @app.task(name="t.charge", shared=False, base=RetryingTask, permanent_for=(KeyError,))
    def charge() -> None:
        return None

    plan = plan_of(charge)
    assert plan is not None
    assert plan.retry
    assert plan.dead_letter
    assert charge.retry_for == (Exception,)
    assert charge.permanent_for == (KeyError,)
    assert RetryingTask.permanent_for == (PermanentError,)  # the base was not mutated
    for name in ("retry_for", "permanent_for"):
        assert isinstance(getattr(RetryingTask, name), tuple)


def test_kit_task_mixes_into_another_task_class() -> None:
    class FrameworkTask(Task):  # type: ignore[type-arg]  # stands for DjangoTask
        def delay_on_commit(self, *args: Any, **kwargs: Any) -> str:
            return "deferred"

    mixed = kit_task_class(FrameworkTask)
    assert issubclass(mixed, KitTask)
    assert issubclass(mixed, FrameworkTask)
    assert mixed.__mro__.index(KitTask) < mixed.__mro__.index(FrameworkTask)
    assert kit_task_class("celery.app.task:Task") is KitTask

    class Both(RetryingTask, FrameworkTask):  # the mixin pattern issue 6 will use
        pass

    assert Both._kit_plan is not None
    assert Both().delay_on_commit() == "deferred"


def test_kit_task_defines_no_init() -> None:
    assert "__init__" not in vars(KitTask)
    assert "__init__" not in vars(RetryingTask)


def test_redis_feature_without_redis_is_refused_on_finalize() -> None:
    app = make_app(
        "t",
        settings=Settings(_environ={}, broker_url="amqp://guest@127.0.0.1:1//"),
    )

    @app.task(name="t.locked", shared=False, lock="x")
    def locked() -> None:
        return None

    with pytest.raises(ConfigError, match=r"set redis\.url"):
        check_redis_options(app)  # what the worker's start-up step runs


class _Policy(RetryingTask):
    backoff_base_s = 0.5


@pytest.mark.parametrize("retries", [0, 1, 2, 3, 8, 50])
def test_backoff_is_full_jitter_below_the_capped_exponential(retries: int) -> None:
    settings = Settings(
        _environ={}, broker_url=DEAD, tasks={"retry_backoff_max_s": 3, "max_countdown_s": 10}
    )
    random.seed(retries)
    delays = [backoff_s(_Policy(), settings, retries) for _ in range(300)]
    ceiling = min(3.0, 0.5 * 2**retries)
    assert all(0.0 <= d <= ceiling for d in delays)
    assert max(delays) > ceiling * 0.8  # jitter spans the range, not a constant


def test_backoff_never_exceeds_the_countdown_the_broker_allows() -> None:
    settings = Settings(
        _environ={},
        broker_url=DEAD,
        broker={"transport": "kombu"},  # the worker holds retries: max_countdown_s caps them
        tasks={"retry_backoff_max_s": 600, "max_countdown_s": 2},
    )
    assert all(backoff_s(_Policy(), settings, 20) <= 2 for _ in range(200))
    # with the delay set a retry waits there: only retry_backoff_max_s caps it
    delayed = Settings(
        _environ={}, broker_url=DEAD, tasks={"retry_backoff_max_s": 600, "max_countdown_s": 2}
    )
    assert max(backoff_s(_Policy(), delayed, 20) for _ in range(200)) > 2


def test_retry_after_is_a_lower_bound_within_the_cap() -> None:
    settings = Settings(_environ={}, broker_url=DEAD, tasks={"retry_backoff_max_s": 5})
    exc = TransientError("throttled", retry_after_s=4)
    assert all(4 <= backoff_s(_Policy(), settings, 0, exc) <= 5 for _ in range(100))
    huge = TransientError("throttled", retry_after_s=3600)
    assert backoff_s(_Policy(), settings, 0, huge) == 5


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, None),
        (302, None),
        (400, PermanentHTTPError),
        (404, PermanentHTTPError),
        (408, TransientHTTPError),
        (422, PermanentHTTPError),
        (429, TransientHTTPError),
        (500, TransientHTTPError),
        (501, PermanentHTTPError),
        (503, TransientHTTPError),
    ],
)
def test_http_status_classification(status: int, kind: type[Exception] | None) -> None:
    exc = http_error(status, "body", retry_after_s=7)
    assert (type(exc) if exc is not None else None) is kind
    assert is_transient_status(status) is (kind is TransientHTTPError)
    if isinstance(exc, TransientHTTPError):
        assert exc.retry_after_s == 7
        assert exc.status == status
    if isinstance(exc, PermanentHTTPError):
        assert isinstance(exc, PermanentError)
