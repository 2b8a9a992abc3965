"""The Prometheus multiprocess directory of a worker: set-up, cleaning, compaction.

prometheus_client picks multiprocess mode when it is first imported, from
``PROMETHEUS_MULTIPROC_DIR``; a worker must have it set before its pool forks. At start
the directory is cleaned of other processes' files; exited pool processes are marked dead
(their live gauges dropped) and their counters folded into one file so scrapes stay cheap.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from celery_kit.exceptions import ConfigError

if TYPE_CHECKING:
    from celery_kit.config.operations import MetricsSettings
    from celery_kit.config.settings import Settings

__all__ = [
    "MULTIPROC_ENV",
    "TEMP_DIR_PREFIX",
    "MetricsSetupError",
    "Multiprocess",
    "clean_multiprocess_dir",
    "compact_dead_processes",
    "mark_dead",
    "remove_owned_dir",
    "setup_multiprocess",
    "worker_environ",
]

logger = logging.getLogger(__name__)

#: prometheus_client reads this variable once, when it is first imported.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Private directories the kit creates (and removes at worker shutdown) start with this.
TEMP_DIR_PREFIX = "celery-kit-metrics-"
#: Dead processes' files are merged once there are this many (a scrape reads every file).
COMPACT_AFTER_FILES = 16
#: Name part replacing the pid in the merged file of exited processes.
_ARCHIVE = "archive"


class MetricsSetupError(ConfigError):
    """Metrics cannot be counted correctly in this process; the worker refuses to start."""


@dataclass
class Multiprocess:
    """How this process counts: into ``directory`` (multiprocess) or in memory."""

    directory: str | None
    #: The kit created ``directory`` and removes it at worker shutdown.
    owned: bool = False


def worker_environ(settings: Settings, environ: MutableMapping[str, str]) -> dict[str, str]:
    """Variables a worker needs *before* Python starts, for a launcher to add to its env.

    With metrics on and no ``PROMETHEUS_MULTIPROC_DIR`` in ``environ``, names
    ``metrics.multiproc_dir`` or a new private directory (removed at worker shutdown).
    """
    if not settings.metrics.enabled or environ.get(MULTIPROC_ENV):
        return {}
    directory = settings.metrics.multiproc_dir or tempfile.mkdtemp(prefix=TEMP_DIR_PREFIX)
    Path(directory).mkdir(parents=True, exist_ok=True)
    return {MULTIPROC_ENV: directory}


def setup_multiprocess(
    settings: MetricsSettings,
    *,
    single_process: bool,
    environ: MutableMapping[str, str] | None = None,
) -> Multiprocess:
    """Put prometheus_client in multiprocess mode for a worker, or refuse loudly.

    Runs in the worker's main process before the pool forks. If prometheus_client is not
    imported yet, the variable can still be set here; if it was imported without it,
    pool processes would count into their own memory and ``/metrics`` would under-count.

    Args:
        settings: the ``[metrics]`` settings.
        single_process: the pool runs tasks in this process (solo/threads): an in-memory
            registry is then correct.
        environ: the process environment (``os.environ``).

    Raises:
        MetricsSetupError: prometheus_client was imported too early for a prefork pool.
    """
    env = os.environ if environ is None else environ
    owned = False
    if "prometheus_client" not in sys.modules and not env.get(MULTIPROC_ENV):
        directory = settings.multiproc_dir or tempfile.mkdtemp(prefix=TEMP_DIR_PREFIX)
        owned = settings.multiproc_dir is None
        env[MULTIPROC_ENV] = directory
    # deferred: prometheus_client picks multiprocess mode when first imported (module doc)
    from prometheus_client import values

    if getattr(values.ValueClass, "_multiprocess", False):
        directory = env[MULTIPROC_ENV]
        if settings.multiproc_dir and os.path.abspath(settings.multiproc_dir) != os.path.abspath(
            directory
        ):
            logger.warning(
                "celery_kit metrics: %s=%s wins over metrics.multiproc_dir=%s (prometheus_client"
                " reads the variable)",
                MULTIPROC_ENV,
                directory,
                settings.multiproc_dir,
            )
        Path(directory).mkdir(parents=True, exist_ok=True)
        owned = owned or _is_kit_temp_dir(directory)
        removed = clean_multiprocess_dir(directory, keep_pid=os.getpid())
        logger.info(
            "celery_kit metrics: multiprocess directory %s (%d stale files removed)",
            directory,
            removed,
        )
        return Multiprocess(directory, owned)
    if single_process:
        return Multiprocess(None)
    raise MetricsSetupError(
        "metrics.enabled is on and the worker runs a prefork pool, but prometheus_client"
        f" was imported before {MULTIPROC_ENV} was set, so it counts in process memory:"
        " every pool process would keep its own counters and /metrics would show only the"
        " main process's (an under-count). Start the worker with `celery -A proj kit worker"
        " NAME` or `python -m celery_kit.launch -A proj worker …`, or set"
        f" {MULTIPROC_ENV} to an empty directory (one per worker) in the worker's"
        " environment. `python -X importtime` shows which module imported prometheus_client;"
        " or set metrics.enabled = false."
    )


def clean_multiprocess_dir(directory: str, *, keep_pid: int) -> int:
    """Remove every metrics file in ``directory`` not written by ``keep_pid``.

    At worker start no pool process exists yet, so any other file is a leftover of a
    previous run (a restarted container keeps an ``emptyDir``). Returns the count removed.
    """
    removed = 0
    for path in Path(directory).glob("*.db"):
        if path.stem.rsplit("_", 1)[-1] != str(keep_pid):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def remove_owned_dir(multiprocess: Multiprocess | None) -> None:
    """At worker shutdown: remove the directory if the kit created it."""
    if multiprocess is not None and multiprocess.owned and multiprocess.directory:
        shutil.rmtree(multiprocess.directory, ignore_errors=True)


def _is_kit_temp_dir(directory: str) -> bool:
    path = Path(directory).resolve()
    return (
        path.name.startswith(TEMP_DIR_PREFIX)
        and path.parent == Path(tempfile.gettempdir()).resolve()
    )


def mark_dead(pid: int, directory: str) -> None:
    """``mark_process_dead``: drop the live-gauge files of exited process ``pid``."""
    # deferred: prometheus_client picks multiprocess mode when first imported (module doc)
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited child not reaped yet is a zombie: it writes nothing anymore
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _pid_of(path: Path) -> int | None:
    tail = path.stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def compact_dead_processes(directory: str, *, min_files: int = COMPACT_AFTER_FILES) -> int:
    """Fold the counter/histogram files of exited processes into one file per type.

    Each pool process leaves its files behind (counters must not drop when it exits), so
    a worker recycling children would make every scrape read thousands of files. Values
    are merged with prometheus_client's own ``MultiProcessCollector.merge`` (no
    accumulation, as its docstring advises for writing back) into ``<type>_archive.db``.
    Live-gauge files of dead processes are removed (``mark_process_dead``). Call it only
    where no scrape runs concurrently. Returns the number of files folded.
    """
    # deferred: prometheus_client picks multiprocess mode when first imported (module doc)
    from prometheus_client.mmap_dict import MmapedDict, mmap_key
    from prometheus_client.multiprocess import MultiProcessCollector

    root = Path(directory)
    dead: dict[str, list[Path]] = {"counter": [], "histogram": []}
    dead_pids: set[int] = set()
    for path in root.glob("*.db"):
        pid = _pid_of(path)
        if pid is None or _alive(pid):
            continue
        dead_pids.add(pid)
        kind = path.name.split("_", 1)[0]
        if kind in dead:
            dead[kind].append(path)
    for pid in dead_pids:
        mark_dead(pid, directory)
    if sum(len(files) for files in dead.values()) < min_files:
        return 0
    folded = 0
    for kind, files in dead.items():
        if not files:
            continue
        archive = root / f"{kind}_{_ARCHIVE}.db"
        sources = [str(f) for f in files] + ([str(archive)] if archive.exists() else [])
        merged = MultiProcessCollector.merge(sources, accumulate=False)  # type: ignore[no-untyped-call]
        tmp = root / f"{kind}_{_ARCHIVE}.tmp"  # not *.db: invisible to scrapes until renamed
        tmp.unlink(missing_ok=True)
        out = MmapedDict(str(tmp))  # type: ignore[no-untyped-call]
        try:
            for metric in merged:
                for sample in metric.samples:
                    key = mmap_key(
                        metric.name,
                        sample.name,
                        list(sample.labels),
                        list(sample.labels.values()),
                        metric.documentation,
                    )
                    out.write_value(key, sample.value, 0.0)  # type: ignore[no-untyped-call]
        finally:
            out.close()  # type: ignore[no-untyped-call]
        os.replace(tmp, archive)
        for f in files:
            f.unlink(missing_ok=True)
        folded += len(files)
    return folded
