"""Helpers shared by the integration tests (apps, producers, scrapes, a browser)."""
