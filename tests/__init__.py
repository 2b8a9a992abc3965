"""The celery_kit test suite: unit/ mirrors the package; integration/ uses real brokers."""
