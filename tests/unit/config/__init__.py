"""Tests of celery_kit.config: settings, sources, the Celery configuration."""
