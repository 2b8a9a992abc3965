"""Findings as SARIF 2.1.0, so CI (GitHub code scanning, GitLab) can annotate them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import metadata

from celery_kit.config.rules.model import Finding, Rule, Severity
from celery_kit.doctor.report import Masker, mask_text

__all__ = ["SARIF_SCHEMA", "as_sarif"]

SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def _physical(source: tuple[str, int] | None, artifact: str) -> dict[str, object]:
    if source is None:
        return {"artifactLocation": {"uri": artifact}}
    path, line = source
    return {"artifactLocation": {"uri": path}, "region": {"startLine": max(1, line)}}


def _rule(rule: Rule) -> dict[str, object]:
    return {
        "id": rule.id,
        "name": "".join(part.title() for part in rule.id.split("-")),
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.why},
        "helpUri": rule.source.split(" ")[0],
        "help": {
            "text": f"Celery: {rule.fix_celery}\ncelery_kit: {rule.fix_kit}",
        },
        "defaultConfiguration": {"level": _LEVEL[rule.severity]},
        "properties": {"scope": rule.scope.value},
    }


def as_sarif(
    findings: Sequence[Finding],
    *,
    rules: Sequence[Rule],
    app: str,
    artifact: str,
    mask: Masker,
    task_sources: Mapping[str, tuple[str, int]] | None = None,
) -> str:
    """A SARIF log with one run.

    A finding about a task points at the task's function (``task_sources``: task name ->
    ``(path, line)``); the others at ``artifact``, the app's module file.
    """
    sources = task_sources or {}
    index = {rule.id: i for i, rule in enumerate(rules)}
    results = []
    for finding in findings:
        evidence = "; ".join(
            f"{e.key} = {mask(e.value, key=e.key)!r} ({e.origin})" for e in finding.evidence
        )
        text = mask_text(finding.message, mask) + (f" [evidence: {evidence}]" if evidence else "")
        results.append(
            {
                "ruleId": finding.rule.id,
                "ruleIndex": index[finding.rule.id],
                "level": _LEVEL[finding.severity],
                "message": {"text": text},
                "locations": [
                    {
                        "physicalLocation": _physical(sources.get(finding.task or ""), artifact),
                        "logicalLocations": [
                            {"fullyQualifiedName": finding.task or app, "kind": "module"}
                        ],
                    }
                ],
            }
        )
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "celery-kit doctor",
                        "version": metadata.version("celery_kit"),
                        "informationUri": "https://docs.celeryq.dev/",
                        "rules": [_rule(r) for r in rules],
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2, default=str)
