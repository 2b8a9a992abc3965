"""Tests of celery_kit.cli."""
