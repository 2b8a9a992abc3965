"""Only ``config/celery_conf.py`` and ``config/defaults.py`` spell Celery's setting names."""

from __future__ import annotations

import ast
from pathlib import Path

from celery.app.defaults import NAMESPACES, flatten

import celery_kit
from celery_kit.config.celery_keys import SHARED_NAMES

PACKAGE = Path(celery_kit.__file__).parent
#: The one place that writes Celery settings, and the table of safe values it starts from.
ALLOWED = frozenset({"config/celery_conf.py", "config/defaults.py"})
#: Every Celery setting by its lowercase name, e.g. ``broker_transport_options``, except
#: ``broker_url``, ``result_backend`` and ``timezone``: those are also the names of kit
#: settings (``Settings`` fields; ``celery_conf`` maps each to its Celery key), and as
#: strings elsewhere they name the kit setting.
CELERY_NAMES = frozenset(name for name, _ in flatten(NAMESPACES)) - SHARED_NAMES


def key_literals(source: str) -> list[tuple[int, str]]:
    """``(line, text)`` of every string literal in ``source`` that is a Celery setting name."""
    return [
        (node.lineno, node.value)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and node.value in CELERY_NAMES
    ]


def test_celery_setting_names_are_spelled_only_in_the_conf_modules() -> None:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if module not in ALLOWED and (hits := key_literals(path.read_text())):
            found[module] = hits
    assert found == {}, (
        "Celery setting names outside config/celery_conf.py and config/defaults.py: emit"
        " them in celery_conf (or name them in defaults) and read the effective values"
        f" through KitState/Settings or app.conf attributes: {found}"
    )


def test_the_scan_sees_a_key_in_any_position() -> None:
    source = 'conf["task_acks_late"] = 1\nget("broker_transport_options")\nx = "ok"\n'
    assert key_literals(source) == [(1, "task_acks_late"), (2, "broker_transport_options")]


def test_the_scan_is_not_vacuous() -> None:
    assert {"broker_transport_options", "task_acks_late"} <= CELERY_NAMES
    assert frozenset(name for name, _ in flatten(NAMESPACES)) > SHARED_NAMES
    assert key_literals((PACKAGE / "config" / "celery_conf.py").read_text())
    assert key_literals((PACKAGE / "config" / "defaults.py").read_text())
