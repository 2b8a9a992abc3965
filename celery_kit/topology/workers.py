"""Worker profiles → the ``celery worker`` command line and environment.

``celery -A proj kit workers`` prints one command per profile; ``kit worker NAME`` execs it.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

from celery_kit.config.profiles import WorkerProfile
from celery_kit.config.sources import ENV_PREFIX
from celery_kit.config.topology import declared_queues

if TYPE_CHECKING:
    from celery_kit.config.settings import Settings

__all__ = [
    "DERIVED_PROFILE",
    "SOFT_SHUTDOWN_ENV",
    "effective_profiles",
    "render_command",
    "worker_argv",
    "worker_env",
]

#: Name of the profile derived when the config declares no ``[workers.*]`` table.
DERIVED_PROFILE = "default"

#: Environment variable through which a profile's soft-shutdown timeout reaches the
#: worker's Settings (Celery has no command-line flag for it).
SOFT_SHUTDOWN_ENV = f"{ENV_PREFIX}WORKER__SOFT_SHUTDOWN_TIMEOUT_S"


def effective_profiles(settings: Settings) -> tuple[dict[str, WorkerProfile], bool]:
    """The ``[workers.*]`` profiles, or one derived from the declared queues.

    With no profile declared, one worker consuming every declared queue (in declaration
    order, the default queue included) with prefetch 1 serves the default topology.

    Returns:
        The profiles, and whether they were derived (to say so to the user).
    """
    if settings.workers:
        return dict(settings.workers), False
    queues = list(declared_queues(settings, settings.tasks.default_queue))
    return {DERIVED_PROFILE: WorkerProfile(queues=queues, prefetch_multiplier=1)}, True


def worker_argv(
    name: str,
    *,
    profile: WorkerProfile,
    app: str,
    celery: Sequence[str] = ("celery",),
    global_options: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``celery worker`` command line for profile ``name``.

    Args:
        name: the profile name (used for the default node name).
        profile: the profile.
        app: the ``-A`` value, e.g. ``proj`` or ``proj.celery:app``.
        celery: how to invoke Celery (``("celery",)``, or ``(sys.executable, "-m", "celery")``).
        global_options: options that go before the subcommand (``--broker …``).
        extra: further ``celery worker`` arguments, appended last (they win).
    """
    argv = [*celery, "-A", app, *global_options, "worker"]
    argv += ["-Q", ",".join(profile.queues), "-n", profile.hostname or f"{name}@%h"]
    argv += ["-P", profile.pool, "-l", profile.loglevel]
    if profile.concurrency is not None:
        argv += ["-c", str(profile.concurrency)]
    if profile.autoscale is not None:
        argv += [f"--autoscale={profile.autoscale.max},{profile.autoscale.min}"]
    argv += ["--prefetch-multiplier", str(profile.effective_prefetch_multiplier)]
    if profile.max_tasks_per_child is not None:
        argv += ["--max-tasks-per-child", str(profile.max_tasks_per_child)]
    if profile.max_memory_per_child_kb is not None:
        argv += ["--max-memory-per-child", str(profile.max_memory_per_child_kb)]
    return [*argv, *extra]


def worker_env(profile: WorkerProfile) -> dict[str, str]:
    """Variables a profile's worker needs on top of the inherited environment."""
    env = {}
    if profile.soft_shutdown_timeout_s is not None:
        env[SOFT_SHUTDOWN_ENV] = f"{profile.soft_shutdown_timeout_s:g}"
    return env


def render_command(name: str, *, profile: WorkerProfile, app: str) -> str:
    """One shell line (``VAR=value celery -A app worker …``), e.g. for a Procfile."""
    assignments = [f"{k}={shlex.quote(v)}" for k, v in sorted(worker_env(profile).items())]
    return " ".join([*assignments, shlex.join(worker_argv(name, profile=profile, app=app))])
