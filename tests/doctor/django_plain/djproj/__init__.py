"""A plain Django + Celery project (no celery_kit), as Celery's Django guide sets it up."""

from djproj.celery import app as celery_app

__all__ = ["celery_app"]
