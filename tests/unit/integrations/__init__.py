"""Tests of celery_kit.integrations."""
