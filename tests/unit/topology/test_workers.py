"""Worker profiles without a broker: validation, argv/env, and the two CLI commands."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from celery_kit import ConfigError, Settings
from celery_kit.cli import main
from celery_kit.config.profiles import WorkerProfile, max_prefetch_multiplier
from celery_kit.topology.workers import (
    SOFT_SHUTDOWN_ENV,
    effective_profiles,
    render_command,
    worker_argv,
    worker_env,
)

REDIS = "redis://127.0.0.1:6399/0"


def profile(**values: Any) -> WorkerProfile:
    return WorkerProfile.model_validate({"queues": ["default"], **values})


def option(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def test_latency_profile_command() -> None:
    argv = worker_argv("critical", profile=profile(queues=["critical", "high"]), app="proj")
    assert argv == [
        "celery", "-A", "proj", "worker", "-Q", "critical,high", "-n", "critical@%h",
        "-P", "prefork", "-l", "INFO", "--prefetch-multiplier", "1",
    ]  # fmt: skip


def test_bulk_profile_prefetches_more_unless_told() -> None:
    assert profile(kind="bulk").effective_prefetch_multiplier == 4
    assert profile(kind="bulk", prefetch_multiplier=8).effective_prefetch_multiplier == 8
    assert profile(kind="latency").effective_prefetch_multiplier == 1
    argv = worker_argv("b", profile=profile(kind="bulk"), app="proj")
    assert option(argv, "--prefetch-multiplier") == "4"


def test_every_option_reaches_the_command_line() -> None:
    p = profile(
        concurrency=3,
        pool="threads",
        max_tasks_per_child=100,
        max_memory_per_child_kb=250_000,
        hostname="w1@%h",
        loglevel="WARNING",
    )
    argv = worker_argv("x", profile=p, app="proj.celery:app", extra=["-E"])
    assert option(argv, "-c") == "3"
    assert option(argv, "-P") == "threads"
    assert option(argv, "--max-tasks-per-child") == "100"
    assert option(argv, "--max-memory-per-child") == "250000"
    assert option(argv, "-n") == "w1@%h"
    assert option(argv, "-l") == "WARNING"
    assert argv[-1] == "-E"  # extra arguments last, so they win


def test_autoscale_is_max_comma_min() -> None:
    argv = worker_argv("x", profile=profile(autoscale={"max": 8, "min": 2}), app="p")
    assert "--autoscale=8,2" in argv
    assert "-c" not in argv


def test_global_options_go_before_the_subcommand() -> None:
    argv = worker_argv(
        "x", profile=profile(), app="p", celery=("py", "-m", "celery"), global_options=["-b=x"]
    )
    assert argv[:6] == ["py", "-m", "celery", "-A", "p", "-b=x"]
    assert argv[6] == "worker"


def test_soft_shutdown_reaches_the_worker_through_its_settings() -> None:
    assert worker_env(profile()) == {}
    env = worker_env(profile(soft_shutdown_timeout_s=30))
    assert env == {SOFT_SHUTDOWN_ENV: "30"}
    # the worker's Settings read it from the environment and emit Celery's key
    conf = Settings(_environ=env, broker_url=REDIS).celery_conf()
    assert conf["worker_soft_shutdown_timeout"] == 30.0


def test_rendered_command_is_one_shell_line() -> None:
    p = profile(queues=["a", "b"], soft_shutdown_timeout_s=7.5, hostname="my worker@%h")
    line = render_command("x", profile=p, app="proj")
    words = shlex.split(line)
    assert words[0] == f"{SOFT_SHUTDOWN_ENV}=7.5"
    assert words[1:] == worker_argv("x", profile=p, app="proj")


def test_max_prefetch_multiplier() -> None:
    assert max_prefetch_multiplier({}) == 0
    profiles = {"a": profile(), "b": profile(kind="bulk"), "c": profile(prefetch_multiplier=2)}
    assert max_prefetch_multiplier(profiles) == 4


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"queues": []}, r"workers\.w\.queues"),
        ({"queues": ["low", "low"]}, "queue\\(s\\) listed twice: low"),
        ({"queues": ["nowhere"]}, r"workers\.w: queue\(s\) 'nowhere' not declared"),
        ({"concurrency": 2, "autoscale": {"max": 4}}, "either concurrency or autoscale"),
        ({"autoscale": {"max": 2, "min": 3}}, r"autoscale min \(3\) must not exceed max"),
        ({"autoscale": {"max": 4}, "pool": "threads"}, "autoscale needs the prefork pool"),
        ({"prefetch_multiplier": 0}, r"workers\.w\.prefetch_multiplier"),
        ({"kind": "batch"}, r"workers\.w\.kind"),
        ({"concurency": 2}, "did you mean `workers.w.concurrency`"),
    ],
)
def test_bad_profiles_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings(_environ={}, broker_url=REDIS, workers={"w": {"queues": ["low"], **values}})


def test_profile_names_must_be_process_type_names() -> None:
    with pytest.raises(ConfigError, match="a profile name is a Procfile process type"):
        Settings(_environ={}, broker_url=REDIS, workers={"a b": {"queues": ["low"]}})


# -- CLI ---------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project module whose app has two profiles (the module name is unique per test)."""
    name = f"wproj_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        "from celery_kit import make_app\n"
        f"app = make_app({name!r}, broker_url={REDIS!r}, workers={{\n"
        "  'critical': {'queues': ['critical'], 'concurrency': 2},\n"
        "  'bulk': {'queues': ['low', 'bulk'], 'kind': 'bulk', 'soft_shutdown_timeout_s': 9},\n"
        "})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path / name


def test_kit_workers_prints_one_procfile_line_per_profile(project: Path) -> None:
    result = CliRunner().invoke(main, ["-A", f"{project.name}:app", "workers"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == ["critical", "bulk"]
    assert lines[0].endswith(f"celery -A {project.name}:app worker -Q critical -n critical@%h"
                             " -P prefork -l INFO -c 2 --prefetch-multiplier 1")  # fmt: skip
    assert lines[1].startswith(f"bulk: {SOFT_SHUTDOWN_ENV}=9 celery -A ")


def test_kit_workers_without_profiles_derives_one_from_the_queues(
    tmp_path: Path, monkeypatch: Any
) -> None:
    (tmp_path / "noprof.py").write_text(
        f"from celery_kit import make_app\napp = make_app('noprof', broker_url={REDIS!r})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    result = CliRunner().invoke(main, ["-A", "noprof:app", "workers"])
    assert result.exit_code == 0, result.output
    assert "derived profile 'default' from the declared queues" in result.stderr
    (line,) = result.stdout.splitlines()
    argv = shlex.split(line.removeprefix("default: "))
    assert argv[argv.index("-Q") + 1] == "critical,high,default,low,bulk"
    assert argv[argv.index("--prefetch-multiplier") + 1] == "1"


def test_explicit_profiles_are_kept_and_nothing_is_derived() -> None:
    settings = Settings(workers={"bulk": {"queues": ["low"]}})
    profiles, derived = effective_profiles(settings)
    assert (list(profiles), derived) == (["bulk"], False)


def test_kit_worker_execs_the_profile_command(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr("os.execve", lambda path, argv, env: calls.append((path, argv, env)))
    result = CliRunner().invoke(main, ["-A", f"{project.name}:app", "worker", "bulk", "-E"])
    assert result.exit_code == 0, result.output
    ((path, argv, env),) = calls
    assert path == sys.executable
    assert argv[:5] == [sys.executable, "-m", "celery", "-A", f"{project.name}:app"]
    assert option(argv, "-Q") == "low,bulk"
    assert argv[-1] == "-E"
    assert env[SOFT_SHUTDOWN_ENV] == "9"


def test_kit_worker_refuses_an_unknown_profile(project: Path) -> None:
    result = CliRunner().invoke(main, ["-A", f"{project.name}:app", "worker", "nope"])
    assert result.exit_code == 2
    assert "no profile 'nope'; profiles: critical, bulk" in result.output
