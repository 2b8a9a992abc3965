"""The example's Django app: tasks declared with ``django.tasks.task``."""
