"""suanli's ledger engine: the pure domain core (no I/O) and, in ``ledger.store``, its storage."""
