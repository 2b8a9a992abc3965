"""docs/integrations.md and README.md: every marked snippet is verbatim in the example file
that an integration test runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[3]
DOC = ROOT / "docs" / "integrations.md"
SNIPPET = re.compile(r"<!-- snippet: (\S+) -->\n```python\n(.*?)```", re.S)
PYTHON = re.compile(r"```python\n(.*?)```", re.S)

README = ROOT / "README.md"
SNIPPETS = SNIPPET.findall(DOC.read_text())
README_SNIPPETS = SNIPPET.findall(README.read_text())


def test_the_doc_shows_every_integration_example() -> None:
    paths = {path for path, _ in SNIPPETS}
    assert {
        "examples/django_proj/proj/celery.py",
        "examples/django_proj/orders/views.py",
        "examples/flask_app/webapp/__init__.py",
        "examples/flask_app/make_celery.py",
        "examples/fastapi_app.py",
    } <= paths
    # every python block is a marked snippet: nothing untested to copy
    assert len(PYTHON.findall(DOC.read_text())) == len(SNIPPETS)


@pytest.mark.parametrize(("path", "code"), SNIPPETS, ids=[p for p, _ in SNIPPETS])
def test_snippet_is_verbatim_in_its_example_file(path: str, code: str) -> None:
    source = (ROOT / path).read_text()
    assert code in source, f"docs/integrations.md differs from {path}: copy the file again"
    compile(code if code == source else source, path, "exec")


def test_readme_shows_the_three_integrations() -> None:
    assert {path for path, _ in README_SNIPPETS} == {
        "examples/django_proj/proj/celery.py",
        "examples/flask_app/webapp/__init__.py",
        "examples/fastapi_app.py",
    }


@pytest.mark.parametrize(("path", "code"), README_SNIPPETS, ids=[p for p, _ in README_SNIPPETS])
def test_readme_snippet_is_verbatim_in_its_example_file(path: str, code: str) -> None:
    assert code in (ROOT / path).read_text(), f"README.md differs from {path}: copy it again"
