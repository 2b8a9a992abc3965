"""Settings: sources, precedence, origins, and the failure path of every rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from celery_kit import CeleryKitError, ConfigError, Settings
from celery_kit.config.sources import OriginKind

REDIS = "redis://127.0.0.1:6399/0"


def load(tmp_path: Path | None = None, toml: str | None = None, env=None, **kwargs) -> Settings:
    config = None
    if toml is not None:
        assert tmp_path is not None
        config = tmp_path / "kit.toml"
        config.write_text(toml)
    return Settings(_config=config, _environ=env or {}, **kwargs)


# -- precedence and origins ------------------------------------------------------------


def test_defaults_are_the_safe_ones() -> None:
    s = load()
    conf = s.celery_conf()
    assert conf["task_acks_late"] is True
    assert conf["task_reject_on_worker_lost"] is True
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["accept_content"] == ["json"]
    assert (conf["task_soft_time_limit"], conf["task_time_limit"]) == (540, 600)


def test_precedence_kwargs_over_env_over_toml(tmp_path: Path) -> None:
    toml = "[tasks]\nsoft_time_limit_s = 100\ntime_limit_s = 200\nresult_expires_s = 50\n"
    env = {"CELERY_KIT_TASKS__TIME_LIMIT_S": "300", "CELERY_KIT_TASKS__RESULT_EXPIRES_S": "60"}
    s = load(tmp_path, toml, env, tasks={"result_expires_s": 70})
    assert s.tasks.soft_time_limit_s == 100  # TOML only
    assert s.tasks.time_limit_s == 300  # env beats TOML
    assert s.tasks.result_expires_s == 70  # kwarg beats env
    assert s.origin_of("tasks.soft_time_limit_s").kind is OriginKind.TOML
    assert str(s.origin_of("tasks.time_limit_s")) == "env CELERY_KIT_TASKS__TIME_LIMIT_S"
    assert s.origin_of("tasks.result_expires_s").kind is OriginKind.KWARG
    assert s.origin_of("tasks.acks_late") is None  # kit default


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text('timezone = "Europe/Paris"\n')
    s = Settings(_environ={"CELERY_KIT_CONFIG": str(path)})
    assert s.timezone == "Europe/Paris"
    assert s.origin_of("timezone").detail == str(path)


def test_celery_own_env_is_read_below_the_kits() -> None:
    s = load(env={"CELERY_BROKER_URL": REDIS, "CELERY_RESULT_BACKEND": "redis://h:6379/3"})
    assert s.broker_url == REDIS
    assert s.result_backend == "redis://h:6379/3"


def test_env_json_for_lists_and_overrides() -> None:
    env = {
        "CELERY_KIT_SERIALIZATION__ACCEPT_CONTENT": '["json", "application/json"]',
        "CELERY_KIT_CELERY_OVERRIDES__WORKER_SEND_TASK_EVENTS": "true",
    }
    s = load(env=env)
    assert s.serialization.accept_content == ["json", "application/json"]
    assert s.celery_conf()["worker_send_task_events"] is True  # coerced by Celery's type


def test_result_backend_derived_from_redis_broker() -> None:
    from celery_kit.config.celery_conf import build_conf

    conf = build_conf(load(broker_url=REDIS))
    assert conf["result_backend"].value == REDIS
    assert conf["result_backend"].origin.kind is OriginKind.DERIVED


def test_settings_are_frozen() -> None:
    s = load()
    with pytest.raises(Exception, match="frozen"):
        s.timezone = "Europe/Paris"  # type: ignore[misc]


# -- derived redelivery budget ---------------------------------------------------------


def test_visibility_timeout_derived_into_all_three_places() -> None:
    s = load(
        broker_url=REDIS,
        tasks={
            "soft_time_limit_s": 50,
            "time_limit_s": 100,
            "max_countdown_s": 30,
            "retry_backoff_max_s": 40,
        },
        worker={"prefetch_multiplier": 2},
        broker={"visibility_margin_s": 10, "transport": "kombu"},
    )
    conf = s.celery_conf()
    expected = 100 * 2 + 40 + 10
    assert conf["broker_transport_options"]["visibility_timeout"] == expected
    assert conf["result_backend_transport_options"]["visibility_timeout"] == expected
    assert conf["visibility_timeout"] == expected


def test_per_task_limits_feed_the_budget() -> None:
    s = load(
        broker_url=REDIS,
        tasks={"limits": {"proj.slow": {"soft_time_limit_s": 1000, "time_limit_s": 1200}}},
        broker={"transport": "kombu"},
    )
    conf = s.celery_conf()
    assert conf["task_annotations"] == {"proj.slow": {"soft_time_limit": 1000, "time_limit": 1200}}
    assert conf["visibility_timeout"] == 1200 + 600 + 300


def test_user_transport_options_are_kept() -> None:
    s = load(broker_url=REDIS, broker={"transport_options": {"max_connections": 20}})
    opts = s.celery_conf()["broker_transport_options"]
    assert opts["max_connections"] == 20
    assert "visibility_timeout" in opts


def test_amqp_gets_publisher_confirms_and_no_visibility() -> None:
    conf = load(broker_url="amqp://guest:guest@localhost//").celery_conf()
    assert conf["broker_transport_options"]["confirm_publish"] is True
    assert "visibility_timeout" not in conf
    assert "result_backend" not in conf  # no derived backend for RabbitMQ


def test_override_is_applied_last_and_marked() -> None:
    from celery_kit.config.celery_conf import build_conf

    conf = build_conf(load(celery_overrides={"worker_send_task_events": True}))
    assert conf["worker_send_task_events"].value is True
    assert conf["worker_send_task_events"].origin.kind is OriginKind.OVERRIDE


def test_override_of_time_limit_moves_the_derived_visibility() -> None:
    conf = load(
        broker_url=REDIS, broker={"transport": "kombu"}, celery_overrides={"task_time_limit": 1000}
    ).celery_conf()
    assert conf["task_time_limit"] == 1000
    assert conf["visibility_timeout"] == 1000 + 600 + 300


# -- every bad configuration is refused, naming the field and the fix -----------------

BAD: list[tuple[str, dict, str]] = [
    # (id, loader kwargs, text the error must contain)
    (
        "soft>=hard",
        {"tasks": {"soft_time_limit_s": 600, "time_limit_s": 600}},
        "set tasks.time_limit_s above 600",
    ),
    ("prefetch-0", {"worker": {"prefetch_multiplier": 0}}, "worker.prefetch_multiplier"),
    (
        "pickle-serializer",
        {"serialization": {"task_serializer": "pickle"}},
        "serialization.allow_unsafe",
    ),
    ("yaml-accept", {"serialization": {"accept_content": ["json", "yaml"]}}, "accepts yaml"),
    (
        "msgpack-result",
        {"serialization": {"result_serializer": "msgpack"}},
        "serialization.result_serializer",
    ),
    (
        "pickle-via-override",
        {"celery_overrides": {"accept_content": ["pickle"]}},
        "celery_overrides.accept_content",
    ),
    (
        "soft>=hard-via-override",
        {"celery_overrides": {"task_soft_time_limit": 700}},
        "celery_overrides.task_soft_time_limit",
    ),
    ("unsupported-broker", {"broker_url": "sqs://"}, "SQS has no priorities"),
    ("unknown-broker", {"broker_url": "kafka://x"}, "use redis://"),
    ("bad-redis-port", {"broker_url": "redis://localhost:abc/0"}, "port"),
    ("bad-redis-db", {"broker_url": "redis://localhost:6379/zero"}, "database"),
    ("backend-amqp", {"result_backend": "amqp://"}, "removed in Celery 5"),
    ("backend-unknown", {"result_backend": "postgres://x/y"}, "unknown result backend"),
    ("backend-rediss-no-cert", {"result_backend": "rediss://h:6380/0"}, "ssl_cert_reqs"),
    ("unknown-kwarg", {"broker_ulr": REDIS}, "did you mean `broker_url`"),
    (
        "unknown-nested-kwarg",
        {"tasks": {"sof_time_limit_s": 1}},
        "did you mean `tasks.soft_time_limit_s`",
    ),
    (
        "override-typo",
        {"celery_overrides": {"task_ack_late": True}},
        "did you mean `task_acks_late`",
    ),
    (
        "override-old-style",
        {"celery_overrides": {"CELERY_TASK_SERIALIZER": "json"}},
        "use `task_serializer`",
    ),
    (
        "visibility-too-short",
        {"broker_url": REDIS, "broker": {"visibility_timeout_s": 60, "transport": "kombu"}},
        "at least 1500 s",
    ),
    (
        "kit-visibility-below-two-renewals",
        {"broker_url": REDIS, "broker": {"visibility_timeout_s": 20, "renewal_interval_s": 15}},
        "at least 30 s, or lower broker.renewal_interval_s",
    ),
    (
        "kit-transport-unknown",
        {"broker_url": REDIS, "broker": {"transport": "fast"}},
        "transport",
    ),
    (
        "kit-rediss-without-cert-policy",
        {"broker_url": "rediss://127.0.0.1:6399/0"},
        "ssl_cert_reqs=required",
    ),
    (
        "amqp-consumer-timeout",
        {
            "broker_url": "amqp://localhost//",
            "tasks": {"soft_time_limit_s": 1700, "time_limit_s": 1900},
        },
        "consumer_timeout",
    ),
    ("negative-limit", {"tasks": {"time_limit_s": -1}}, "tasks.time_limit_s"),
    ("wrong-type", {"tasks": {"time_limit_s": "ten"}}, "valid number"),
    ("bad-timezone", {"timezone": "Mars/Olympus"}, "IANA"),
    (
        "per-task-soft>=hard",
        {"tasks": {"limits": {"p.t": {"soft_time_limit_s": 9, "time_limit_s": 5}}}},
        "tasks.limits.p.t",
    ),
]


@pytest.mark.parametrize(("kwargs", "needle"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_kwargs_are_refused(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(**kwargs)
    assert needle in str(info.value)
    assert isinstance(info.value, CeleryKitError)


def test_unknown_toml_key_names_file_and_suggests(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "[tasks]\nsoft_time_limt_s = 5\n")
    text = str(info.value)
    assert "`tasks.soft_time_limt_s` in " in text
    assert str(tmp_path / "kit.toml") in text
    assert "did you mean `tasks.soft_time_limit_s`" in text


def test_unknown_toml_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean `worker`"):
        load(tmp_path, "[workr]\nprefetch_multiplier = 1\n")


def test_invalid_toml_syntax(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(tmp_path, "[tasks\n")


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Settings(_config=tmp_path / "nope.toml", _environ={})


def test_toml_value_error_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "[worker]\nprefetch_multiplier = 0\n")
    assert "worker.prefetch_multiplier" in str(info.value)
    assert "toml" in str(info.value)


def test_unknown_env_var_suggests_the_env_name() -> None:
    with pytest.raises(ConfigError) as info:
        load(env={"CELERY_KIT_TASKS__TIME_LIMT_S": "5"})
    assert "CELERY_KIT_TASKS__TIME_LIMT_S (environment)" in str(info.value)
    assert "did you mean `CELERY_KIT_TASKS__TIME_LIMIT_S`" in str(info.value)


def test_env_type_error_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="env CELERY_KIT_TASKS__TIME_LIMIT_S"):
        load(env={"CELERY_KIT_TASKS__TIME_LIMIT_S": "ten"})


def test_env_list_must_be_json() -> None:
    with pytest.raises(ConfigError, match="must be JSON"):
        load(env={"CELERY_KIT_SERIALIZATION__ACCEPT_CONTENT": "json,pickle"})


def test_env_override_with_wrong_type() -> None:
    with pytest.raises(ConfigError, match="not a valid int"):
        load(env={"CELERY_KIT_CELERY_OVERRIDES__BROKER_POOL_LIMIT": "many"})


def test_reserved_env_names_are_not_settings() -> None:
    load(env={"CELERY_KIT_TEST_AMQP_URL": "amqp://x//"})  # accepted: not a setting


def test_kit_broker_conflicting_with_celery_env_is_refused() -> None:
    with pytest.raises(ConfigError, match="Celery always uses CELERY_BROKER_URL"):
        load(env={"CELERY_BROKER_URL": REDIS}, broker_url="redis://other:6379/0")


def test_unsafe_serializer_allowed_explicitly() -> None:
    s = load(
        serialization={
            "task_serializer": "pickle",
            "accept_content": ["pickle", "json"],
            "allow_unsafe": True,
        }
    )
    assert s.celery_conf()["task_serializer"] == "pickle"


def test_many_errors_are_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        load(env={"CELERY_KIT_NOPE": "1", "CELERY_KIT_ALSO_NOPE": "2"})
    assert "CELERY_KIT_NOPE" in str(info.value)
    assert "CELERY_KIT_ALSO_NOPE" in str(info.value)


def test_result_backend_registered_by_a_plugin_is_accepted(monkeypatch) -> None:
    """django-celery-results registers ``django-db`` via ``celery.result_backends``."""
    with pytest.raises(ConfigError, match="unknown result backend"):
        load(result_backend="django-db://")
    monkeypatch.setattr("celery_kit.config.settings._plugin_backends", lambda: {"django-db"})
    assert load(result_backend="django-db://").result_backend == "django-db://"
