"""Shared pytest configuration for the celery_kit test suite."""

pytest_plugins = ["celery_kit.testing"]
