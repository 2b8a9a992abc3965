"""Beat without duplicates: RedBeat configured by the kit, reconciliation, overlap guard."""
