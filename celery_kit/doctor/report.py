"""Findings as a table (grouped by severity) or JSON; secrets masked by the caller's masker."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from celery_kit.config.rules.model import Finding, Severity

__all__ = ["Masker", "as_json", "as_table", "finding_dict", "mask_text"]

#: ``mask(value, key=...)``: hides passwords in URLs and values of secret-looking keys.
Masker = Callable[..., Any]


def mask_text(text: str, mask: Masker) -> str:
    """``text`` with every URL in it masked (free text: messages, notes)."""
    return " ".join(mask(word) if "://" in word else word for word in text.split(" "))


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)


def finding_dict(finding: Finding, mask: Masker) -> dict[str, Any]:
    """One finding as plain data (the JSON report's items)."""
    rule = finding.rule
    return {
        "rule": rule.id,
        "severity": rule.severity.value,
        "title": rule.title,
        "message": mask_text(finding.message, mask),
        "task": finding.task,
        "evidence": [
            {"key": e.key, "value": mask(e.value, key=e.key), "origin": e.origin}
            for e in finding.evidence
        ],
        "why": rule.why,
        "source": rule.source,
        "fix": {"celery": rule.fix_celery, "celery_kit": rule.fix_kit},
    }


def as_json(findings: Sequence[Finding], *, app: str, mask: Masker, notes: Sequence[str]) -> str:
    """The ``--json`` report."""
    counts = {s.value: sum(f.severity is s for f in findings) for s in Severity}
    return json.dumps(
        {
            "app": app,
            "summary": counts,
            "notes": [mask_text(n, mask) for n in notes],
            "findings": [finding_dict(f, mask) for f in findings],
        },
        indent=2,
        default=str,
    )


def as_table(findings: Sequence[Finding], *, app: str, mask: Masker, notes: Sequence[str]) -> str:
    """The readable report: one block per severity, one entry per finding."""
    lines = [f"celery-kit doctor: {app}"]
    lines += [f"  note: {mask_text(n, mask)}" for n in notes]
    for severity in Severity:
        group = [f for f in findings if f.severity is severity]
        if not group:
            continue
        lines.append("")
        lines.append(f"{severity.value.upper()} ({len(group)})")
        for finding in group:
            data = finding_dict(finding, mask)
            lines.append(f"  [{finding.rule.id}] {data['message']}")
            for item in data["evidence"]:
                lines.append(f"      {item['key']} = {_show(item['value'])}  ({item['origin']})")
            lines.append(f"      why: {finding.rule.why}")
            lines.append(f"      fix (Celery): {finding.rule.fix_celery}")
            lines.append(f"      fix (celery_kit): {finding.rule.fix_kit}")
            lines.append(f"      source: {finding.rule.source}")
    counts = ", ".join(f"{sum(f.severity is s for f in findings)} {s.value}" for s in Severity)
    lines.append("")
    lines.append(f"{len(findings)} findings: {counts}")
    return "\n".join(lines)
