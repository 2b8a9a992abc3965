"""Run rules over a subject: the one engine behind the doctor, ``kit check`` and refusals."""

from __future__ import annotations

from collections.abc import Iterable

from celery_kit.config.rules.beat import BEAT_RULES
from celery_kit.config.rules.delivery import DELIVERY_RULES
from celery_kit.config.rules.hygiene import HYGIENE_RULES
from celery_kit.config.rules.model import Finding, Rule, Scope, Subject
from celery_kit.config.rules.runtime import RUNTIME_RULES
from celery_kit.config.rules.tasks import TASK_RULES
from celery_kit.config.rules.topology import TOPOLOGY_RULES

__all__ = ["evaluate", "rule_by_id", "static_rules"]


def static_rules() -> tuple[Rule, ...]:
    """Every rule that needs no broker connection, in documentation order."""
    return DELIVERY_RULES + HYGIENE_RULES + RUNTIME_RULES + TOPOLOGY_RULES + TASK_RULES + BEAT_RULES


def rule_by_id(rule_id: str, rules: Iterable[Rule] | None = None) -> Rule:
    """The rule named ``rule_id``.

    Raises:
        KeyError: no such rule.
    """
    for rule in static_rules() if rules is None else rules:
        if rule.id == rule_id:
            return rule
    raise KeyError(rule_id)


def evaluate(
    subject: Subject,
    *,
    rules: Iterable[Rule] | None = None,
    only: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
) -> list[Finding]:
    """The findings of ``rules`` (default: all static rules) on ``subject``.

    Task-scope rules run only when ``subject.tasks`` is known. Findings come back
    most severe first, then in rule order.

    Args:
        subject: the effective configuration (and tasks) to judge.
        rules: the rules to run.
        only: run only these rule ids.
        ignore: skip these rule ids.
    """
    wanted = None if only is None else set(only)
    skipped = set(ignore)
    findings: list[Finding] = []
    for rule in static_rules() if rules is None else rules:
        if (
            rule.check is None
            or rule.id in skipped
            or (wanted is not None and rule.id not in wanted)
        ):
            continue
        if rule.scope is Scope.TASKS and subject.tasks is None:
            continue
        for message, evidence, task in rule.check(subject):
            findings.append(rule.finding(message, evidence, task))
    return sorted(findings, key=lambda f: -f.severity.rank)
