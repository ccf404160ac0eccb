"""The key registry as the fold sees it: every key ever registered, and the log keys."""

from __future__ import annotations

from typing import Any

from ledger.state import LedgerState


def key_registry(state: LedgerState) -> dict[str, Any]:
    registry = state.registry
    return {
        "size": state.size,
        "origin": registry.origin,
        "keys": [
            {
                "key_id": key_id,
                "vkey": k.verifier.vkey,
                "name": k.verifier.name,
                "roles": sorted(k.roles),
                "centre": k.centre,
                "valid_from_index": k.from_index,
                "valid_until_index": k.until_index,
                "active": k.active_at(state.size),
            }
            for key_id, k in registry.keys.items()
        ],
        "log_keys": [
            {"vkey": e.verifier.vkey, "from_size": e.from_size} for e in registry.log_epochs
        ],
    }
