"""``python -m celery_kit.health``: kept path of :mod:`celery_kit.observability.probes`."""

from __future__ import annotations

from celery_kit.observability.probes import (
    HEARTBEAT_FILE_ENV,
    ProbeResult,
    check_liveness,
    check_readiness,
    main,
    probe,
)

__all__ = [
    "HEARTBEAT_FILE_ENV",
    "ProbeResult",
    "check_liveness",
    "check_readiness",
    "main",
    "probe",
]

if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess in tests
    raise SystemExit(main())
