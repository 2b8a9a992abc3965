"""The corpus: real-world-modelled configurations give exactly the findings they must."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from celery_kit.config.rules import Severity, evaluate, static_rules
from celery_kit.doctor.subject import subject_of

CORPUS = Path(__file__).parents[2] / "doctor" / "corpus"
PROJECTS = sorted(p.stem for p in CORPUS.glob("*.py") if p.stem not in ("__init__", "kit_defaults"))


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"doctor_corpus_{name}", CORPUS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_corpus_has_at_least_eight_projects() -> None:
    assert len(PROJECTS) >= 8


@pytest.mark.parametrize("name", PROJECTS)
def test_project_gets_exactly_its_findings(name: str) -> None:
    module = load(name)
    found = {f.rule.id for f in evaluate(subject_of(module.app))}
    known = {r.id for r in static_rules()}
    assert known >= module.MUST
    assert known >= module.MUST_NOT
    assert found >= module.MUST, f"missing: {module.MUST - found}"
    assert not (module.MUST_NOT & found), f"unexpected: {module.MUST_NOT & found}"


def test_kit_defaults_give_no_error_and_no_warning() -> None:
    module = load("kit_defaults")
    findings = evaluate(subject_of(module.app))
    serious = [f for f in findings if f.severity is not Severity.INFO]
    assert serious == [], [(f.rule.id, f.message) for f in serious]
    # only the two settings that depend on the deployment: its grace period and its size
    assert {f.rule.id for f in findings} <= {"soft-shutdown-off", "concurrency-from-cpu-count"}
