"""Integration tests: a private redis-server, RabbitMQ and real celery workers."""
