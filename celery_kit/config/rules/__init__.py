"""The rule catalogue: every check of a Celery configuration and its tasks, as data."""

from celery_kit.config.rules.engine import evaluate, rule_by_id, static_rules
from celery_kit.config.rules.model import (
    Evidence,
    Finding,
    Rule,
    Scope,
    Severity,
    Subject,
    TaskInfo,
)

__all__ = [
    "Evidence",
    "Finding",
    "Rule",
    "Scope",
    "Severity",
    "Subject",
    "TaskInfo",
    "evaluate",
    "rule_by_id",
    "static_rules",
]
