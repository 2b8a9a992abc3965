"""Benchmarks: celery_kit against plain Celery, side by side in one run (``make bench``)."""
