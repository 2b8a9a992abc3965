"""Unit tests, one package per celery_kit package."""
