"""Framework glue: ``django`` (``make_app(..., framework="django")``) and ``flask``.

Each submodule imports its framework; importing this package imports neither.
"""

from __future__ import annotations

__all__: list[str] = []
