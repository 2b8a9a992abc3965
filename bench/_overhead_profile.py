"""bench.overhead profiles: py-spy on a worker (main + pool processes) and on a producer.

``record`` runs ``py-spy record --subprocesses`` on a pid while the caller works;
``breakdown`` turns the collapsed stacks into CPU µs per task by component: each sample
goes to the *deepest* frame that matches a rule (so a kit wrapper that calls Celery's own
handler is counted as Celery's, and only the kit's own work as the kit's), except that
anything under pool-child replacement in a main process counts as recycling.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

#: (label, substring of a frame) in no particular order: the deepest matching frame wins.
RULES: tuple[tuple[str, str], ...] = (
    ("kit: envelope guard (consumer)", "(celery_kit/tasks/consumer_guard.py"),
    ("kit: envelope guard (consumer)", "(celery_kit/tasks/envelope.py"),
    ("kit: message size/zip guard", "(celery_kit/tasks/compression.py"),
    ("kit: Redis raw-item guard", "(celery_kit/tasks/redis_guard.py"),
    ("kit: poison-message request", "(celery_kit/tasks/poison.py"),
    ("kit: KitTask call / guards", "(celery_kit/tasks/base.py"),
    ("kit: KitTask call / guards", "(celery_kit/tasks/guards.py"),
    ("kit: idempotency (Redis scripts)", "(celery_kit/coordination/"),
    ("kit: priority / publish wrapper", "(celery_kit/topology/"),
    ("kit: metrics / heartbeat", "(celery_kit/observability/"),
    ("kit: other", "(celery_kit/"),
    ("Celery consumer (strategy, request)", "(celery/worker/"),
    ("Celery tracer + signals", "(celery/app/trace.py"),
    ("Celery tracer + signals", "(celery/utils/dispatch/"),
    ("Celery app (Task, send_task, amqp)", "(celery/app/"),
    ("broker client (kombu, redis-py, py-amqp)", "(kombu/"),
    ("broker client (kombu, redis-py, py-amqp)", "(redis/"),
    ("broker client (kombu, redis-py, py-amqp)", "(amqp/"),
    ("pool IPC (billiard, asynpool)", "(billiard/"),
    ("pool IPC (billiard, asynpool)", "(celery/concurrency/"),
    ("logging", "(logging/"),
    ("serialization (json, pickle)", "(json/"),
)
RECYCLING = ("_repopulate_pool", "_create_worker_process")


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter or on PATH (``None``: not installed)."""
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


def record(pid: int, out: Path, *, rate: int = 200) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` into ``out`` (collapsed stacks); stop with :func:`stop`.

    One py-spy per process: ``--subprocesses`` on a prefork worker made the pool replace
    its children while sampled (seen with billiard 4.2), which is what we would measure.
    """
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed: pip install py-spy")
    argv = [exe, "record", "-p", str(pid), "-r", str(rate), "-f", "raw", "-o", str(out)]
    argv += ["--nonblocking", "-d", "600"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a :func:`record` and let it write its file."""
    proc.send_signal(signal.SIGINT)
    proc.wait(60)


def _label(frames: list[str], *, main: bool) -> str:
    # a pool child's own stack starts inside the fork that made it: not recycling there
    if main and any(name in frame for frame in frames for name in RECYCLING):
        return "pool child replacement (recycling)"
    for frame in reversed(frames):
        for label, needle in RULES:
            if needle in frame:
                return label
    return "other (interpreter, stdlib)"


def breakdown(*paths: Path, main: bool = True) -> Counter[str]:
    """Samples per component in the collapsed-stack files ``paths`` (of main processes,
    or of pool processes with ``main=False``)."""
    out: Counter[str] = Counter()
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                out[_label(stack.split(";"), main=main)] += int(count)
    return out


def per_task_us(samples: Counter[str], cpu_s: float, n: int) -> dict[str, float]:
    """Spread ``cpu_s`` (measured, for ``n`` tasks) over the components by sample share."""
    total = sum(samples.values())
    if not total or not n:
        return {}
    return {k: cpu_s * v / total / n * 1e6 for k, v in samples.most_common()}
