"""Minimal Django settings with CELERY_* values for the doctor to judge."""

SECRET_KEY = "doctor-test-not-secret"
INSTALLED_APPS = ["shop"]
USE_TZ = True

CELERY_BROKER_URL = "redis://:django-redis-pw@127.0.0.1:1/0"
CELERY_RESULT_BACKEND = "redis://:django-redis-pw@127.0.0.1:1/1"
CELERY_TASK_ACKS_LATE = True
CELERY_ACCEPT_CONTENT = ["json", "pickle"]
CELERY_TASK_TIME_LIMIT = 7200
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
