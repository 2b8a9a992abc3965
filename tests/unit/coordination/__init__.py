"""Tests of celery_kit.coordination."""
