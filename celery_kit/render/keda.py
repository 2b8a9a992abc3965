"""KEDA ScaledObjects: one per worker profile, on a Prometheus trigger over the kit's metrics.

Why Prometheus and not one Redis list trigger per priority sub-list: the HPA KEDA drives
takes the MAXIMUM of its triggers' replica counts, not the sum, so ``q``, ``q:3`` and
``q:6`` as three triggers scale for the longest list alone; a profile consuming two queues
with ten priority steps would need twenty triggers and still under-count. The kit's
exporter already sums every sub-list (and works on RabbitMQ too), so one query sees the
real backlog. Running tasks are added to it, so a busy pool is not scaled away.
"""

from __future__ import annotations

from typing import Any

from celery_kit.render.k8s import COMPONENT_LABEL, NAME_LABEL
from celery_kit.render.model import Context, dump_yaml

__all__ = ["backlog_query", "keda_objects", "render_keda"]


def backlog_query(ctx: Context, profile: str) -> str:
    """PromQL: messages waiting in ``profile``'s queues plus tasks its workers run."""
    prefix = ctx.settings.metrics.prefix
    queues = "|".join(ctx.profiles[profile].queues)
    waiting = f'sum(max by (queue_name) ({prefix}_queue_length{{queue_name=~"{queues}"}}))'
    running = f'sum({prefix}_worker_tasks_active{{hostname=~"{ctx.node_pattern(profile)}"}})'
    return f"({waiting} or vector(0)) + ({running} or vector(0))"


def _scaled_object(ctx: Context, profile: str) -> dict[str, Any]:
    deploy = ctx.settings.deploy
    low, high = ctx.replicas(profile)
    grace = ctx.grace_period_s(profile)
    # Scale down one pod per grace period, after the backlog stayed low for a while:
    # a pod leaving requeues its tasks at once, and the next one only goes once it is gone.
    window = max(300, grace)
    name = ctx.worker_name(profile)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {
            "name": name,
            "namespace": deploy.namespace,
            "labels": {
                **deploy.labels,
                NAME_LABEL: deploy.name,
                COMPONENT_LABEL: "worker",
                "celery-kit/profile": profile,
            },
        },
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicaCount": low,
            "maxReplicaCount": high,
            "pollingInterval": deploy.polling_interval_s,
            # only used when scaling to zero: last activity + cooldown before the last pod goes
            "cooldownPeriod": window,
            # Prometheus unreachable: keep what is needed rather than guess
            "fallback": {"failureThreshold": 3, "replicas": max(low, 1)},
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": window,
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": grace}],
                        }
                    }
                }
            },
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": deploy.prometheus_url,
                        "query": backlog_query(ctx, profile),
                        # one replica per `concurrency` messages (waiting + running)
                        "threshold": str(ctx.tasks_per_replica(profile)),
                        "activationThreshold": "0",
                    },
                }
            ],
        },
    }


def keda_objects(ctx: Context) -> list[dict[str, Any]]:
    """One ScaledObject per worker profile."""
    ctx.require_metrics("keda")
    return [_scaled_object(ctx, profile) for profile in ctx.profiles]


def render_keda(ctx: Context) -> dict[str, str]:
    """``k8s/keda.yaml``."""
    return {"k8s/keda.yaml": dump_yaml(keda_objects(ctx), header=ctx.header("keda"))}
