"""The kit's Redis: which URL it uses, the key builder, per-process clients."""

from __future__ import annotations

import os

import pytest

from celery_kit import ConfigError, Settings, make_app
from celery_kit.coordination.client import kit_redis, redis_url
from celery_kit.coordination.keys import Keys


def settings(**kwargs: object) -> Settings:
    return Settings(_environ={}, **kwargs)


def test_redis_url_defaults_to_a_redis_broker() -> None:
    assert redis_url(settings(broker_url="redis://b:6379/3")) == "redis://b:6379/3"


def test_redis_url_falls_back_to_a_redis_result_backend() -> None:
    s = settings(broker_url="amqp://guest@rabbit//", result_backend="redis://r:6379/1")
    assert redis_url(s) == "redis://r:6379/1"


def test_redis_url_setting_wins() -> None:
    s = settings(broker_url="redis://b/0", redis={"url": "redis://kit:6380/2"})
    assert redis_url(s) == "redis://kit:6380/2"


def test_no_redis_anywhere_says_what_to_set() -> None:
    with pytest.raises(ConfigError, match="CELERY_KIT_REDIS__URL"):
        redis_url(settings(broker_url="amqp://guest@rabbit//", result_backend="rpc://"))


@pytest.mark.parametrize("bad", ["amqp://x//", "redis://h:port/0", "redis://h/db"])
def test_redis_url_setting_is_validated(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"redis\.url"):
        settings(redis={"url": bad})


def test_new_sections_read_from_the_environment() -> None:
    s = Settings(
        _environ={
            "CELERY_KIT_REDIS__KEY_PREFIX": "shop",
            "CELERY_KIT_DLQ__MAX_WORKER_LOST_DELIVERIES": "2",
            "CELERY_KIT_IDEMPOTENCY__LEASE_S": "5",
            "CELERY_KIT_LOCKS__TTL_S": "7",
            "CELERY_KIT_RETRY__MAX_RETRIES": "9",
        }
    )
    assert (s.redis.key_prefix, s.dlq.max_worker_lost_deliveries) == ("shop", 2)
    assert (s.idempotency.lease_s, s.locks.ttl_s, s.retry.max_retries) == (5, 7, 9)


def test_a_misspelled_section_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="did you mean"):
        Settings(_environ={"CELERY_KIT_DLQ__RETENTON_S": "5"})


def test_every_key_is_under_the_prefix() -> None:
    keys = Keys("shop")
    made = [
        keys.idempotency("proj.charge", "charge:1"),
        keys.lock("report:1"),
        keys.rate("api"),
        keys.dlq_index(),
        keys.dlq_entry("id"),
        keys.worker_lost("id"),
    ]
    assert all(k.startswith("shop:") for k in made)
    assert len(set(made)) == len(made)


def test_long_user_parts_are_hashed() -> None:
    key = Keys("p").lock("x" * 1000)
    assert len(key) < 60
    assert key.startswith("p:lock:sha1-")
    assert key == Keys("p").lock("x" * 1000)


def test_client_is_lazy_per_app_and_rebuilt_after_fork() -> None:
    a = make_app("a", settings=settings(broker_url="redis://127.0.0.1:1/0"))
    b = make_app("b", settings=settings(broker_url="redis://127.0.0.1:1/1"))
    ra, rb = kit_redis(a), kit_redis(b)  # building a client opens no connection
    assert ra is kit_redis(a)
    assert ra is not rb
    assert ra.client.connection_pool.connection_kwargs["db"] == 0
    assert rb.client.connection_pool.connection_kwargs["db"] == 1
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os._exit(0 if kit_redis(a) is not ra else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
