"""Run every benchmark module in ``bench/`` (each writes ``bench/results/<name>.md``).

``python -m bench`` runs all; ``python -m bench priority`` runs one. A module is any
``bench/<name>.py`` with a ``main() -> None``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))
    chosen = argv or names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(names)}")
        return 2
    for name in chosen:
        print(f"== bench.{name}", flush=True)
        importlib.import_module(f"bench.{name}").main()
    print(f"results: {here / 'results'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
