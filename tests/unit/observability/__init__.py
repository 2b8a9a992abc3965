"""Tests of celery_kit.observability."""
