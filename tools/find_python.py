"""Print the newest Python interpreter at least as new as ``argv[1]`` (e.g. ``3.12``).

Used by ``make test`` to build the Django 6 venv (Django 6 needs Python >= 3.12 while the
package supports 3.10+). Looks at ``python3.N`` on PATH, newest first, then at pyenv's
installed versions (pyenv shims refuse versions that are not selected). Prints nothing
when there is none; runs on the stdlib only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_NEWEST_MINOR = 20
_PROBE = "import sys; print(sys.version_info[0], sys.version_info[1], sys.executable)"


def _probe(command: str) -> tuple[int, int, str] | None:
    try:
        done = subprocess.run(
            [command, "-c", _PROBE], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    major, minor, exe = done.stdout.strip().split(" ", 2)
    return int(major), int(minor), exe


def _candidates(minimum: tuple[int, int]) -> list[str]:
    names = [f"python3.{m}" for m in range(_NEWEST_MINOR, minimum[1] - 1, -1)]
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    versions = Path(root) / "versions"
    installed = sorted(
        versions.glob("3.*/bin/python3"),
        key=lambda p: tuple(int(x) for x in p.parts[-3].split(".")[:2] if x.isdigit()),
        reverse=True,
    )
    return names + [str(p) for p in installed]


def main(argv: list[str]) -> int:
    want = tuple(int(x) for x in (argv[1] if len(argv) > 1 else "3.12").split("."))
    minimum = (want[0], want[1])
    for command in _candidates(minimum):
        found = _probe(command)
        if found is not None and (found[0], found[1]) >= minimum:
            print(found[2])
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
