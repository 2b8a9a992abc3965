"""Examples that use celery_kit; each is exercised by a test."""
