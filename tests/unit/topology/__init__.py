"""Tests of celery_kit.topology and the topology specs in celery_kit.config."""
