"""Observability: metrics, queue depth, the worker heartbeat, health probes and reports."""
