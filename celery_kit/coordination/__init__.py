"""Coordination on the kit's Redis: client and keys, leases, locks, idempotency, rate, DLQ."""
