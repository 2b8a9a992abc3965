"""``python -m celery_kit.cli``: the ``celery-kit`` script."""

from __future__ import annotations

from celery_kit.cli import main

if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess in tests
    main()
