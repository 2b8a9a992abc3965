"""Kubernetes objects: valid against the Kubernetes schemas, and saying what the config says."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from celery_kit.render import render
from celery_kit.render.k8s import k8s_objects
from celery_kit.render.keda import keda_objects
from celery_kit.render.model import Context
from celery_kit.topology.workers import worker_argv
from tests.integration.support.render import production

#: Newest Kubernetes version whose schemas kubernetes-validate ships.
K8S_VERSION = kubernetes_validate.latest_version()


def objects(**overrides: Any) -> list[dict[str, Any]]:
    return k8s_objects(Context(production(**overrides), "proj"))


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def test_every_core_object_validates_against_the_kubernetes_schema() -> None:
    text = render("k8s", production(), app="proj")["k8s/celery.yaml"]
    docs = list(yaml.safe_load_all(text))
    core = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com")]
    assert {d["kind"] for d in core} == {"Deployment", "PodDisruptionBudget", "Service"}
    for doc in core:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validator_rejects_a_broken_object() -> None:
    # the check above can fail: a misspelled field is refused in strict mode
    deployment = next(o for o in objects() if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_worker_container_runs_exactly_the_kit_workers_command() -> None:
    settings = production()
    deployments = by_kind(objects(), "Deployment")
    for name, profile in settings.workers.items():
        pod = deployments[f"celery-worker-{name}"]["spec"]["template"]["spec"]
        assert pod["containers"][0]["command"] == worker_argv(name, profile=profile, app="proj")


def test_probes_run_the_heartbeat_probe_without_app_or_broker() -> None:
    pod = by_kind(objects(), "Deployment")["celery-worker-critical"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["exec"]["command"] == [
        "python", "-m", "celery_kit.health", "--liveness"
    ]  # fmt: skip
    assert container["readinessProbe"]["exec"]["command"][-1] == "--readiness"
    assert container["startupProbe"]["exec"]["command"][-1] == "--liveness"
    assert "inspect" not in str(container)  # never `celery inspect ping`


def test_requeue_mode_remaps_sigterm_and_grace_covers_soft_shutdown() -> None:
    deployments = by_kind(objects(), "Deployment")
    bulk = deployments["celery-worker-bulk"]["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in bulk["containers"][0]["env"]}
    assert env["REMAP_SIGTERM"] == "SIGQUIT"
    assert env["CELERY_KIT_WORKER__SOFT_SHUTDOWN_TIMEOUT_S"] == "60"
    # 60 s soft shutdown + deploy.shutdown_margin_s (15)
    assert bulk["terminationGracePeriodSeconds"] == 75
    critical = deployments["celery-worker-critical"]["spec"]["template"]["spec"]
    assert critical["terminationGracePeriodSeconds"] == 15  # no soft shutdown: margin only


def test_finish_mode_waits_for_the_longest_time_limit_of_the_profile() -> None:
    objs = objects(
        deploy={"shutdown": "finish"},
        tasks={"limits": {"proj.reports.build": {"soft_time_limit_s": 1700, "time_limit_s": 1800}}},
        routes={"proj.reports.*": "bulk"},
    )
    deployments = by_kind(objs, "Deployment")
    grace = {
        n: d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        for n, d in deployments.items()
        if "worker" in n
    }
    # the report task is routed to bulk: only that profile waits 1800 s
    assert grace == {
        "celery-worker-critical": 615,
        "celery-worker-default": 615,
        "celery-worker-bulk": 1815,
    }
    env = deployments["celery-worker-bulk"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "REMAP_SIGTERM" not in {e["name"] for e in env}


def test_pdb_metrics_service_monitor_exporter_and_flower() -> None:
    objs = objects()
    assert set(by_kind(objs, "PodDisruptionBudget")) == {
        "celery-worker-critical", "celery-worker-default", "celery-worker-bulk"
    }  # fmt: skip
    exporter = by_kind(objs, "Deployment")["celery-exporter"]
    assert exporter["spec"]["replicas"] == 1
    assert exporter["spec"]["strategy"] == {"type": "Recreate"}
    assert exporter["spec"]["template"]["spec"]["containers"][0]["command"][-2:] == [
        "kit", "exporter"
    ]  # fmt: skip
    flower = by_kind(objs, "Deployment")["celery-flower"]["spec"]["template"]["spec"]
    assert flower["containers"][0]["command"][3:5] == ["kit", "flower"]
    monitors = by_kind(objs, "ServiceMonitor")
    assert len(monitors) == 1
    scraped = [
        s for s in by_kind(objs, "Service").values()
        if s["metadata"]["labels"].get("celery-kit/metrics") == "true"
    ]  # fmt: skip
    assert len(scraped) == 4  # three worker profiles + the exporter
    for service in scraped:
        assert service["spec"]["ports"][0]["port"] == 9808


def test_insecure_flower_is_not_rendered() -> None:
    objs = objects(flower={"allow_insecure": True})
    assert "celery-flower" not in by_kind(objs, "Deployment")


# -- CRDs: no package ships KEDA's or prometheus-operator's schemas, so their required ---
# fields (from the CRDs' openAPIV3Schema "required" lists) are checked here.

_SCALED_OBJECT_REQUIRED = {"spec": ["scaleTargetRef", "triggers"]}
_SERVICE_MONITOR_REQUIRED = {"spec": ["selector"]}


def _check_required(doc: dict[str, Any], required: dict[str, list[str]]) -> None:
    assert set(doc) >= {"apiVersion", "kind", "metadata", "spec"}
    assert doc["metadata"]["name"]
    assert doc["metadata"]["namespace"]
    for section, keys in required.items():
        missing = [k for k in keys if k not in doc[section]]
        assert missing == [], f"{doc['kind']} {doc['metadata']['name']}: missing {missing}"


def test_keda_scaled_objects_have_the_crd_required_fields() -> None:
    settings = production()
    docs = keda_objects(Context(settings, "proj"))
    assert len(docs) == len(settings.workers)
    for doc in docs:
        assert (doc["apiVersion"], doc["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
        _check_required(doc, _SCALED_OBJECT_REQUIRED)
        assert doc["spec"]["scaleTargetRef"]["name"] == doc["metadata"]["name"]
        for trigger in doc["spec"]["triggers"]:
            assert trigger["type"] == "prometheus"
            assert {"serverAddress", "query", "threshold"} <= set(trigger["metadata"])
            assert all(isinstance(v, str) for v in trigger["metadata"].values())
        assert doc["spec"]["minReplicaCount"] <= doc["spec"]["maxReplicaCount"]


def test_service_monitor_has_the_crd_required_fields() -> None:
    monitor = by_kind(objects(), "ServiceMonitor")["celery-metrics"]
    _check_required(monitor, _SERVICE_MONITOR_REQUIRED)
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_scaled_object_targets_a_rendered_deployment() -> None:
    settings = production()
    deployments = by_kind(k8s_objects(Context(settings, "proj")), "Deployment")
    for doc in keda_objects(Context(settings, "proj")):
        assert doc["spec"]["scaleTargetRef"]["name"] in deployments
