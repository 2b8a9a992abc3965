"""Countdowns of any length on Redis: the delay-set mover and its operations."""
