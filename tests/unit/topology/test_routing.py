"""The kit router without a broker: matching, precedence through Celery's Router, checks."""

from __future__ import annotations

import logging
import sys
import types
from typing import Any

import pytest
from celery import Celery

from celery_kit import ConfigError, Settings, make_app
from celery_kit.config.router import KitRouter
from celery_kit.config.topology import Priority, RouteSpec
from celery_kit.topology.priority import kit_priority_in_request
from celery_kit.topology.routing import check_task_routing

REDIS = "redis://127.0.0.1:6399/0"


def kit_app(**values: Any) -> Celery:
    return make_app("t", settings=Settings(_environ={}, broker_url=REDIS, **values))


def route(app: Celery, name: str, *, task: Any = None, **options: Any) -> tuple[str, Any]:
    """What Celery's Router (with the kit router inside) decides: (queue, kit priority)."""
    if task is not None:  # what Task.apply_async merges before routing
        options = {**task._get_exec_options(), **options}
    decided = app.amqp.router.route(options, name, (), {}, task)
    return decided["queue"].name, decided.get("priority")


# -- KitRouter ---------------------------------------------------------------------------


def test_exact_names_beat_globs_and_the_first_glob_wins() -> None:
    router = KitRouter(
        {
            "proj.*": "default",
            "proj.payments.*": "critical",  # shadowed by proj.* (file order)
            "proj.payments.refund": RouteSpec(queue="high", priority=Priority.HIGH),
        }
    )
    assert router("proj.payments.refund") == {"queue": "high", "priority": 7}
    assert router("proj.payments.charge") == {"queue": "default"}
    assert router("other.task") is None


def test_answers_are_fresh_dicts() -> None:
    # Celery's Router pops "queue" from the answer: the cached route must survive that
    router = KitRouter({"a.*": "critical"})
    router("a.x").pop("queue")
    assert router("a.x") == {"queue": "critical"}


def test_a_hook_refines_the_matching_route_and_the_first_answer_wins() -> None:
    def urgent(name: str, args: Any, kwargs: Any, options: Any, **kw: Any) -> Any:
        return {"priority": Priority.HIGHEST} if kwargs.get("urgent") else None

    def never(*args: Any, **kw: Any) -> Any:
        raise AssertionError("hooks after the first answer are not asked")

    router = KitRouter({"a.*": {"queue": "low", "priority": "low"}}, hooks=[urgent])
    assert router("a.x", (), {"urgent": True}, {}) == {"queue": "low", "priority": 9}
    assert router("a.x", (), {}, {}) == {"queue": "low", "priority": 3}
    router = KitRouter({}, hooks=[lambda *a, **k: "high", never])
    assert router("b.y", (), {}, {}) == {"queue": "high"}


def test_hook_import_paths_are_resolved_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("kit_routing_hooks")
    module.by_tier = lambda name, args, kwargs, options, **kw: (  # type: ignore[attr-defined]
        "critical" if kwargs.get("tier") == "gold" else None
    )
    router = KitRouter({}, hooks=["kit_routing_hooks:by_tier"])  # not importable yet: fine
    monkeypatch.setitem(sys.modules, "kit_routing_hooks", module)
    assert router("x", (), {"tier": "gold"}, {}) == {"queue": "critical"}
    assert router("x", (), {"tier": "free"}, {}) is None


def test_routers_setting_validates_import_paths() -> None:
    with pytest.raises(ConfigError, match=r"import path like 'proj\.routing:by_tier'"):
        Settings(_environ={}, routers=["not a path"])


# -- precedence through Celery's own Router ----------------------------------------------


def test_precedence_per_call_over_attribute_over_hook_over_glob_over_default() -> None:
    def hook(name: str, args: Any, kwargs: Any, options: Any, **kw: Any) -> Any:
        return {"priority": Priority.HIGHEST} if name.endswith(".hooked") else None

    app = kit_app(routes={"p.*": {"queue": "low", "priority": "low"}}, routers=[hook])

    @app.task(shared=False, name="p.pinned", queue="high", priority=Priority.HIGH)
    def pinned() -> None: ...

    assert route(app, "unrouted") == ("default", None)  # default queue, its default later
    assert route(app, "p.x") == ("low", Priority.LOW)
    assert route(app, "p.hooked") == ("low", Priority.HIGHEST)
    assert route(app, "p.pinned", task=pinned) == ("high", Priority.HIGH)
    assert route(app, "p.pinned", task=pinned, queue="bulk", priority=1) == ("bulk", 1)
    assert route(app, "p.x", queue="critical") == ("critical", Priority.LOW)


def test_task_attributes_are_read_by_the_router_itself() -> None:
    # Celery 6 is to stop applying queue/priority attributes (5.7 warns): the router
    # reads them from the task it is given, so routing does not depend on Celery doing it
    app = kit_app(routes={"p.*": "low"})
    task = types.SimpleNamespace(queue="high", priority=Priority.HIGH)
    assert app.conf.task_routes[0]("p.x", (), {}, {}, task=task) == {
        "queue": "high",
        "priority": 7,
    }


def test_an_unknown_queue_at_publish_time_is_refused() -> None:
    from celery.exceptions import QueueNotFound

    with pytest.raises(QueueNotFound):
        route(kit_app(), "x", queue="typo")


# -- checks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ({"p.*": "nowhere"}, r'routes\."p\.\*": queue \'nowhere\' is not declared'),
        ({"p.*": {"queue": "bulk", "priority": "high"}}, "'bulk' carries no priorities"),
        ({"p.*": {"queue": "low", "priority": 12}}, r"routes\.p\.\*\.priority` = 12 .* got 12"),
        ({"p.*": {}}, "a route needs a queue, a priority, or both"),
        ({"p.*": {"queue": "low", "prio": 3}}, r"did you mean `routes.p.\*.priority`"),
    ],
)
def test_bad_routes_are_refused_at_startup(routes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings(_environ={}, broker_url=REDIS, routes=routes)


def test_task_attributes_naming_undeclared_queues_stop_the_worker() -> None:
    app = kit_app()

    @app.task(shared=False, name="t.bad", queue="nowhere", priority=42)
    def bad() -> None: ...

    with pytest.raises(ConfigError) as caught:
        check_task_routing(app)
    assert "task 't.bad' sets queue='nowhere'" in str(caught.value)
    assert "got 42" in str(caught.value)


def test_task_attributes_on_declared_queues_pass() -> None:
    app = kit_app()

    @app.task(shared=False, name="t.good", queue="critical", priority="high")
    def good() -> None: ...

    check_task_routing(app)


def test_kit_router_equality_follows_its_configuration() -> None:
    assert KitRouter({"a.*": "low"}) == KitRouter({"a.*": "low"})
    assert KitRouter({"a.*": "low"}) != KitRouter({"a.*": "high"})


# -- the delivered priority, back in kit terms --------------------------------------------


def fake_task(app: Celery, delivery_info: dict[str, Any]) -> Any:
    return types.SimpleNamespace(
        app=app, request=types.SimpleNamespace(delivery_info=delivery_info)
    )


def test_delivered_priority_is_shown_to_the_task_in_kit_terms() -> None:
    task = fake_task(kit_app(), {"exchange": "", "routing_key": "high", "priority": 2})
    kit_priority_in_request(sender=task, task=task)
    assert task.request.delivery_info["priority"] == Priority.HIGH


def test_eager_and_priority_less_requests_are_left_alone() -> None:
    app = kit_app()
    eager = fake_task(app, {"is_eager": True, "priority": 2})
    none = fake_task(app, {"routing_key": "high", "priority": None})
    for task in (eager, none):
        before = dict(task.request.delivery_info)
        kit_priority_in_request(sender=task, task=task)
        assert task.request.delivery_info == before


def test_a_failing_translation_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    task = fake_task(kit_app(), {"routing_key": "high", "priority": "garbage"})
    with caplog.at_level(logging.ERROR, logger="celery_kit.topology.priority"):
        kit_priority_in_request(sender=task, task=task)
    assert "could not translate" in caplog.text


def test_kit_tasks_translate_the_delivered_priority_without_a_signal() -> None:
    from celery import signals

    from celery_kit.build import StartupChecks

    app = kit_app()

    @app.task(name="t.kit", shared=False)
    def kit_task() -> Any:
        return dict(kit_task.request.delivery_info)

    @app.task(name="t.plain", shared=False, base=celery_task_class())
    def plain_task() -> None:
        return None

    before = list(signals.task_prerun.receivers)
    try:
        StartupChecks(types.SimpleNamespace(app=app))
        added = [r for r in signals.task_prerun.receivers if r not in before]
        # one receiver, for the task that is not a KitTask, with it as the only sender
        assert len(added) == 1
        assert kit_priority_in_request not in signals.task_prerun._live_receivers(kit_task)
        assert kit_priority_in_request in signals.task_prerun._live_receivers(plain_task)
    finally:
        signals.task_prerun.receivers[:] = before
        signals.task_prerun.sender_receivers_cache.clear()
    info = {"exchange": "", "routing_key": "high", "priority": 2}
    kit_task.push_request(delivery_info=info, called_directly=False)
    try:
        assert kit_task()["priority"] == Priority.HIGH  # Redis: broker 2 is kit 7
    finally:
        kit_task.pop_request()


def celery_task_class() -> Any:
    from celery import Task

    return Task
