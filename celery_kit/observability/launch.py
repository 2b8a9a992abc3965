"""``python -m celery_kit.launch -A proj worker …``: ``celery`` with metrics prepared first.

prometheus_client chooses multiprocess mode when it is first imported, from
``PROMETHEUS_MULTIPROC_DIR``. This entry point sets it before Python imports Celery or the
app (``CELERY_KIT_METRICS__MULTIPROC_DIR``, else a private temporary directory that the
worker removes at shutdown), then runs the ``celery`` command line unchanged. Use it
when a worker is not started by ``celery -A proj kit worker NAME``, which does the same.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import MutableMapping, Sequence

from celery_kit.observability.multiproc import MULTIPROC_ENV, TEMP_DIR_PREFIX

__all__ = ["MULTIPROC_DIR_SETTING_ENV", "main", "prepare_environ"]

#: The ``metrics.multiproc_dir`` setting as an environment variable.
MULTIPROC_DIR_SETTING_ENV = "CELERY_KIT_METRICS__MULTIPROC_DIR"


def prepare_environ(environ: MutableMapping[str, str]) -> str:
    """Set ``PROMETHEUS_MULTIPROC_DIR`` in ``environ`` unless it is set; return it."""
    directory = environ.get(MULTIPROC_ENV) or environ.get(MULTIPROC_DIR_SETTING_ENV) or ""
    if not directory:
        directory = tempfile.mkdtemp(prefix=TEMP_DIR_PREFIX)
    os.makedirs(directory, exist_ok=True)
    environ[MULTIPROC_ENV] = directory
    return directory


def main(argv: Sequence[str] | None = None) -> None:
    """Prepare the environment, then run ``celery`` with ``argv`` (default: ``sys.argv[1:]``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "prometheus_client" in sys.modules:  # pragma: no cover - only if embedded oddly
        raise RuntimeError("celery_kit.launch must run before prometheus_client is imported")
    prepare_environ(os.environ)
    # deferred: Celery (and whatever imports prometheus_client) must load after the line above
    from celery.__main__ import main as celery_main

    sys.argv = ["celery", *args]
    celery_main()


if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess in tests
    main()
