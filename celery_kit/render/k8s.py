"""Kubernetes objects: a Deployment and PodDisruptionBudget per worker profile, metrics
Services and a ServiceMonitor, the one queue-length exporter, beat (when it has a schedule)
and Flower (with auth only).
"""

from __future__ import annotations

import math
from typing import Any

from celery_kit.render import beat_deploy
from celery_kit.render.model import CONTAINER_METRICS_DIR, Context, dump_yaml

__all__ = ["k8s_objects", "render_k8s"]

#: Label every object carries (its value is ``deploy.name``) and the component label.
NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
PROFILE_LABEL = "celery-kit/profile"
#: Services carrying this label are scraped through the ServiceMonitor.
SCRAPE_LABEL = "celery-kit/metrics"
#: A starting worker imports the app before its first heartbeat: allow 5 minutes.
STARTUP_PERIOD_S = 5
STARTUP_FAILURES = 60


def _labels(ctx: Context, component: str, profile: str | None = None) -> dict[str, str]:
    labels = {**ctx.settings.deploy.labels, NAME_LABEL: ctx.settings.deploy.name}
    labels[COMPONENT_LABEL] = component
    if profile is not None:
        labels[PROFILE_LABEL] = profile
    return labels


def _selector(ctx: Context, component: str, profile: str | None = None) -> dict[str, str]:
    selector = {NAME_LABEL: ctx.settings.deploy.name, COMPONENT_LABEL: component}
    if profile is not None:
        selector[PROFILE_LABEL] = profile
    return selector


def _meta(ctx: Context, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": ctx.settings.deploy.namespace, "labels": labels}


def _env(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in values.items()]


def _exec_probe(argv: list[str], *, period_s: int, failures: int) -> dict[str, Any]:
    return {
        "exec": {"command": argv},
        "periodSeconds": period_s,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _resources(ctx: Context, profile: str | None) -> dict[str, Any]:
    res = ctx.resources(profile) if profile is not None else ctx.settings.deploy.resources
    out: dict[str, Any] = {}
    if res.requests:
        out["requests"] = dict(res.requests)
    if res.limits:
        out["limits"] = dict(res.limits)
    return out


def _metrics_port(ctx: Context) -> list[dict[str, Any]]:
    if not ctx.settings.metrics.enabled:
        return []
    return [{"name": "metrics", "containerPort": ctx.settings.metrics.port, "protocol": "TCP"}]


def _container(ctx: Context, name: str, command: list[str], profile: str | None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": ctx.settings.deploy.image,
        "command": command,
        "envFrom": [{"secretRef": {"name": ctx.settings.deploy.secret_name}}],
        "resources": _resources(ctx, profile),
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    return container


def _deployment(
    ctx: Context,
    name: str,
    labels: dict[str, str],
    selector: dict[str, str],
    pod_spec: dict[str, Any],
    *,
    replicas: int | None = None,
    recreate: bool = False,
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if replicas is not None:
        spec["replicas"] = replicas
    spec["selector"] = {"matchLabels": selector}
    if recreate:  # never two at once (two exporters would double every queue length)
        spec["strategy"] = {"type": "Recreate"}
    annotations = {}
    ports = [p for c in pod_spec["containers"] for p in c.get("ports", [])]
    metrics = [p["containerPort"] for p in ports if p.get("name") == "metrics"]
    if ctx.settings.metrics.enabled and metrics:
        annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(metrics[0])}
    template_meta: dict[str, Any] = {"labels": labels}
    if annotations:
        template_meta["annotations"] = annotations
    spec["template"] = {"metadata": template_meta, "spec": pod_spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(ctx, name, labels),
        "spec": spec,
    }


def _worker(ctx: Context, profile: str) -> list[dict[str, Any]]:
    name = ctx.worker_name(profile)
    labels = _labels(ctx, "worker", profile)
    selector = _selector(ctx, "worker", profile)
    health = ctx.settings.health
    container = _container(ctx, "worker", ctx.worker_argv(profile), profile)
    container["env"] = _env(ctx.worker_env(profile))
    if ports := _metrics_port(ctx):
        container["ports"] = ports
    if health.enabled:
        period = max(10, math.ceil(health.interval_s))
        container["startupProbe"] = _exec_probe(
            ctx.probe_argv("liveness"), period_s=STARTUP_PERIOD_S, failures=STARTUP_FAILURES
        )
        container["livenessProbe"] = _exec_probe(
            ctx.probe_argv("liveness"), period_s=period, failures=3
        )
        container["readinessProbe"] = _exec_probe(
            ctx.probe_argv("readiness"), period_s=period, failures=2
        )
    pod: dict[str, Any] = {
        # SIGTERM → (soft shutdown) → requeue → exit must fit, or the kubelet SIGKILLs the
        # worker and its unacked messages wait for the broker's redelivery timeout.
        "terminationGracePeriodSeconds": ctx.grace_period_s(profile),
        "containers": [container],
    }
    if ctx.settings.metrics.enabled:
        container["volumeMounts"] = [{"name": "metrics", "mountPath": CONTAINER_METRICS_DIR}]
        pod["volumes"] = [{"name": "metrics", "emptyDir": {}}]
    low, _ = ctx.replicas(profile)
    objects = [_deployment(ctx, name, labels, selector, pod, replicas=max(low, 1))]
    objects.append(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta(ctx, name, labels),
            # a node drain takes one worker at a time: each one requeues before the next
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
        }
    )
    if ctx.settings.metrics.enabled:
        objects.append(_service(ctx, name, labels, selector, headless=True))
    return objects


def _service(
    ctx: Context,
    name: str,
    labels: dict[str, str],
    selector: dict[str, str],
    *,
    headless: bool = False,
    port_name: str = "metrics",
    port: int | None = None,
) -> dict[str, Any]:
    number = ctx.settings.metrics.port if port is None else port
    spec: dict[str, Any] = {}
    if headless:  # one endpoint per pod: Prometheus scrapes each worker
        spec["clusterIP"] = "None"
    spec["selector"] = selector
    spec["ports"] = [{"name": port_name, "port": number, "targetPort": port_name}]
    meta_labels = {**labels, SCRAPE_LABEL: "true"} if port_name == "metrics" else labels
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(ctx, name, meta_labels),
            "spec": spec}  # fmt: skip


def _exporter(ctx: Context) -> list[dict[str, Any]]:
    name = ctx.object_name("exporter")
    labels, selector = _labels(ctx, "exporter"), _selector(ctx, "exporter")
    container = _container(ctx, "exporter", ctx.exporter_argv(), None)
    container["ports"] = _metrics_port(ctx)
    container["livenessProbe"] = {
        "httpGet": {"path": "/metrics", "port": "metrics"},
        "periodSeconds": 30,
        "timeoutSeconds": 10,
        "failureThreshold": 3,
    }
    pod = {"containers": [container]}
    deployment = _deployment(ctx, name, labels, selector, pod, replicas=1, recreate=True)
    return [deployment, _service(ctx, name, labels, selector)]


def _beat(ctx: Context) -> list[dict[str, Any]]:
    if not beat_deploy.beat_rendered(ctx):
        return []
    name = ctx.object_name("beat")
    labels, selector = _labels(ctx, "beat"), _selector(ctx, "beat")
    container = _container(ctx, "beat", beat_deploy.beat_argv(ctx), None)
    container["env"] = _env(beat_deploy.beat_env(ctx))
    port = beat_deploy.beat_metrics_port(ctx)
    if port is not None:
        container["ports"] = [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    probe = beat_deploy.beat_probe_argv(ctx)
    container["startupProbe"] = _exec_probe(
        probe, period_s=STARTUP_PERIOD_S, failures=STARTUP_FAILURES
    )
    container["livenessProbe"] = _exec_probe(probe, period_s=30, failures=2)
    # one replica; a rolling update may run two for a moment: only the lease holder sends
    pod = {"containers": [container]}
    objects = [_deployment(ctx, name, labels, selector, pod, replicas=1)]
    if port is not None:
        objects.append(_service(ctx, name, labels, selector, port=port))
    return objects


def _flower(ctx: Context) -> list[dict[str, Any]]:
    argv = ctx.flower_argv()
    if argv is None:  # flower.allow_insecure: the kit renders no unauthenticated Flower
        return []
    flower = ctx.settings.flower
    name = ctx.object_name("flower")
    labels, selector = _labels(ctx, "flower"), _selector(ctx, "flower")
    container = _container(ctx, "flower", argv, None)
    container["ports"] = [{"name": "http", "containerPort": flower.port, "protocol": "TCP"}]
    prefix = f"/{flower.url_prefix}" if flower.url_prefix else ""
    container["readinessProbe"] = {  # /healthcheck answers without authentication
        "httpGet": {"path": f"{prefix}/healthcheck", "port": "http"},
        "periodSeconds": 10,
    }
    pod = {"containers": [container]}
    deployment = _deployment(ctx, name, labels, selector, pod, replicas=1, recreate=True)
    service = _service(ctx, name, labels, selector, port_name="http", port=flower.port)
    return [deployment, service]


def _service_monitor(ctx: Context) -> dict[str, Any]:
    deploy = ctx.settings.deploy
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(ctx, ctx.object_name("metrics"), _labels(ctx, "metrics")),
        "spec": {
            "selector": {"matchLabels": {NAME_LABEL: deploy.name, SCRAPE_LABEL: "true"}},
            "namespaceSelector": {"matchNames": [deploy.namespace]},
            "endpoints": [
                {"port": "metrics", "path": "/metrics", "interval": f"{deploy.scrape_interval_s}s"}
            ],
        },
    }


def k8s_objects(ctx: Context) -> list[dict[str, Any]]:
    """Every Kubernetes object, workers first."""
    objects: list[dict[str, Any]] = []
    for profile in ctx.profiles:
        objects += _worker(ctx, profile)
    if ctx.settings.metrics.enabled:
        ctx.require_metrics("k8s")
        objects += _exporter(ctx)
        objects.append(_service_monitor(ctx))
    objects += _beat(ctx)
    objects += _flower(ctx)
    return objects


def render_k8s(ctx: Context) -> dict[str, str]:
    """``k8s/celery.yaml``."""
    return {"k8s/celery.yaml": dump_yaml(k8s_objects(ctx), header=ctx.header("k8s"))}
