"""Selecting the kit's Redis transport and deriving its visibility timeout (no sockets)."""

from __future__ import annotations

from celery_kit import Settings
from celery_kit.transport import KIT_TRANSPORT

REDIS = "redis://127.0.0.1:6399/0"


def conf(**values: object) -> dict[str, object]:
    return Settings(_environ={}, **values).celery_conf()


def test_redis_brokers_get_the_kit_transport_and_a_short_derived_timeout() -> None:
    c = conf(broker_url=REDIS)
    assert c["broker_transport"] == KIT_TRANSPORT
    assert c["visibility_timeout"] == 60.0
    options = c["broker_transport_options"]
    assert isinstance(options, dict)
    assert (options["renewal_interval"], options["restore_interval"]) == (15.0, 2.0)
    assert options["visibility_timeout"] == 60.0


def test_timeout_follows_the_renewal_interval_not_the_time_limits() -> None:
    c = conf(
        broker_url=REDIS,
        broker={"renewal_interval_s": 5},
        tasks={"soft_time_limit_s": 3000, "time_limit_s": 3600},
    )
    assert c["visibility_timeout"] == 20.0


def test_kombu_fallback_keeps_the_budget_and_kombus_transport() -> None:
    c = conf(broker_url=REDIS, broker={"transport": "kombu"})
    assert "broker_transport" not in c
    assert c["visibility_timeout"] == 1500.0


def test_rabbitmq_is_untouched() -> None:
    c = conf(broker_url="amqp://guest:guest@127.0.0.1//")
    assert "broker_transport" not in c


def test_an_explicit_broker_transport_override_wins() -> None:
    c = conf(broker_url=REDIS, celery_overrides={"broker_transport": "redis"})
    assert c["broker_transport"] == "redis"


def test_rediss_with_a_certificate_policy_is_accepted() -> None:
    c = conf(broker_url="rediss://127.0.0.1:6399/0?ssl_cert_reqs=required")
    assert c["broker_transport"] == KIT_TRANSPORT


def test_kit_transport_importable_by_the_name_celery_uses() -> None:
    from kombu.transport import resolve_transport

    from celery_kit.transport.redis import Transport

    assert resolve_transport(KIT_TRANSPORT) is Transport
