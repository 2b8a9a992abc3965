"""``[deploy]``: what only a deployment knows (image, namespace, sizes, alert thresholds).

Everything else a rendered artifact says comes from the rest of ``Settings``.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["AlertSettings", "DeployProfile", "DeploySettings", "Resources"]

#: Kubernetes object names and label values (RFC 1123 label, at most 63 characters).
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_KEY = re.compile(r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


_Resource = Literal["cpu", "memory", "ephemeral-storage"]


def _default_requests() -> dict[_Resource, str]:
    return {"cpu": "250m", "memory": "512Mi"}


def _default_limits() -> dict[_Resource, str]:
    return {"memory": "1Gi"}


class Resources(_Model):
    """Container requests and limits (Kubernetes quantities, e.g. ``"500m"``, ``"1Gi"``)."""

    requests: dict[_Resource, str] = Field(default_factory=_default_requests)
    limits: dict[_Resource, str] = Field(default_factory=_default_limits)

    @field_validator("requests", "limits")
    @classmethod
    def _check(cls, value: dict[str, str]) -> dict[str, str]:
        for key, quantity in value.items():
            if not _QUANTITY.match(quantity):
                raise ValueError(
                    f"{key} = {quantity!r} is not a Kubernetes quantity; write e.g. '500m',"
                    " '2', '512Mi' or '1Gi'"
                )
        return value


class DeployProfile(_Model):
    """``[deploy.profiles.NAME]``: per worker profile sizes (unset: the ``[deploy]`` value)."""

    min_replicas: int | None = Field(default=None, ge=0)
    max_replicas: int | None = Field(default=None, ge=1)
    resources: Resources | None = None


class AlertSettings(_Model):
    """``[deploy.alerts]``: thresholds of the rendered Prometheus rules."""

    #: A condition must hold this long before its alert fires.
    for_s: int = Field(default=300, ge=0)
    #: Rate and increase windows of the rules (and the dashboard's fallback window).
    window_s: int = Field(default=300, ge=1)
    #: Rules are evaluated this often (the rule group's ``interval``).
    interval_s: int = Field(default=30, ge=1)
    #: Backlog alert: more messages than this wait in a queue and the number grows.
    backlog_messages: int = Field(default=1000, ge=0)
    #: The oldest waiting message is older than this (Redis, kit-stamped messages).
    oldest_message_age_s: int = Field(default=600, ge=1)
    #: Failed / (succeeded + failed) of one task above this ratio.
    failure_ratio: float = Field(default=0.05, gt=0, le=1)
    #: 95th percentile of publish → start latency above this, per queue.
    latency_p95_s: float = Field(default=60.0, gt=0)
    #: 95th percentile of due → moved into its queue, for delayed tasks (the delay set's
    #: mover). Normal lag is about one ``delays.mover_interval_s``; a leader hand-over adds
    #: up to ``delays.lock_ttl_s`` once.
    delay_lag_p95_s: float = Field(default=60.0, gt=0)


class DeploySettings(_Model):
    """``[deploy]``: input of ``celery -A proj kit render`` (docs/deploy.md)."""

    #: ``-A`` value in rendered commands; ``None``: the one ``kit render`` was started with.
    app: str | None = None
    #: Container image with your code and celery_kit installed.
    image: str = Field(default="proj:latest", min_length=1)
    namespace: str = "default"
    #: Prefix of every object, unit and service name: ``<name>-worker-<profile>``.
    name: str = "celery"
    #: Labels on every Kubernetes object (and pod).
    labels: dict[str, str] = Field(default_factory=dict)
    #: Replicas of each worker profile: KEDA scales between these (0 = scale to zero).
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=10, ge=1)
    resources: Resources = Field(default_factory=Resources)
    #: Per profile overrides of the replica range and resources.
    profiles: dict[str, DeployProfile] = Field(default_factory=dict)
    #: Kubernetes Secret with the environment (CELERY_BROKER_URL, FLOWER_BASIC_AUTH, …).
    secret_name: str = "celery-env"
    #: Compose ``env_file`` and systemd ``EnvironmentFile`` (secrets stay out of the files).
    env_file: str = "/etc/celery-kit/celery.env"
    #: Seconds a worker needs after its soft shutdown to cancel, requeue and exit; added
    #: to every derived grace period (bench/results/shutdown.md measures it).
    shutdown_margin_s: int = Field(default=15, ge=1)
    #: ``requeue``: SIGTERM starts Celery's cold shutdown (REMAP_SIGTERM=SIGQUIT): running
    #: tasks get the soft shutdown timeout, then are requeued at once. ``finish``: warm
    #: shutdown, running tasks finish (grace = longest hard time limit + margin).
    shutdown: Literal["requeue", "finish"] = "requeue"
    #: How often Prometheus scrapes the workers and the exporter (ServiceMonitor).
    scrape_interval_s: int = Field(default=30, ge=1)
    #: How often KEDA asks Prometheus for the backlog.
    polling_interval_s: int = Field(default=30, ge=1)
    #: Prometheus as KEDA reaches it.
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    #: systemd: user, working directory and the ``celery`` executable of the units.
    systemd_user: str = "celery"
    working_directory: str = "/srv/proj"
    celery_bin: str = "/srv/proj/.venv/bin/celery"
    #: Rendered Prometheus rules.
    alerts: AlertSettings = Field(default_factory=AlertSettings)

    @field_validator("namespace", "name", "secret_name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _DNS_LABEL.match(value):
            raise ValueError(
                f"{value!r} is not a Kubernetes name: lowercase letters, digits and '-',"
                " starting and ending with a letter or digit, at most 63 characters"
            )
        return value

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, label in value.items():
            if not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(label):
                raise ValueError(
                    f"deploy.labels: {key!r} = {label!r} is not a Kubernetes label; use"
                    " letters, digits, '-', '_' and '.' (at most 63 characters each)"
                )
        return value

    @model_validator(mode="after")
    def _check_replicas(self) -> DeploySettings:
        for where, low, high in [
            ("deploy", self.min_replicas, self.max_replicas),
            *(
                (f"deploy.profiles.{n}", p.min_replicas, p.max_replicas)
                for n, p in self.profiles.items()
            ),
        ]:
            lo = self.min_replicas if low is None else low
            hi = self.max_replicas if high is None else high
            if lo > hi:
                raise ValueError(
                    f"{where}: min_replicas ({lo}) exceeds max_replicas ({hi}); raise"
                    " max_replicas or lower min_replicas"
                )
        return self
