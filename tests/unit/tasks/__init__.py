"""Tests of celery_kit.tasks."""
