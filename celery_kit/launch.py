"""``python -m celery_kit.launch``: kept path of :mod:`celery_kit.observability.launch`."""

from __future__ import annotations

from celery_kit.observability.launch import MULTIPROC_DIR_SETTING_ENV, main, prepare_environ

__all__ = ["MULTIPROC_DIR_SETTING_ENV", "main", "prepare_environ"]

if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess in tests
    main()
