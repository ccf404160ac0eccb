"""The projection: the fold's money state as flat, comparable numbers.

Balances, caps and holds are projections of the log. The service stores this summary of
its live fold (``ledger.store.projection``); ``suanli rebuild`` recomputes it by replaying
the log from nothing; the auditor replays the log independently and compares its own
summary with the stored one at the same log size. Any difference means the live state
drifted from the rules (a bug, or a tampered store) and the audit fails.

Names are ``used/<cap key>`` and ``held/<cap key>`` (every cap counter, as
``ledger.caps`` keys them), ``claims`` (claims and captures recorded), ``subsidy_fen``
(their subsidy net of clawbacks and reversals) and ``grants_fen``. Zero counters are left
out, so a counter that went back to zero compares equal to one never touched.
"""

from __future__ import annotations

from ledger import caps, claims, grants
from ledger.state import LedgerState


def summary(state: LedgerState) -> dict[str, int]:
    out: dict[str, int] = {}
    book = caps.book(state)
    for prefix, counters in (("used", book.used), ("held", book.held)):
        for key, value in counters.items():
            if value:
                out[f"{prefix}/{caps.key_text(key)}"] = value
    records = claims.book(state).claims.values()
    out["claims"] = len(records)
    out["subsidy_fen"] = sum(_net(r) for r in records)
    out["grants_fen"] = sum(
        g.paid_fen - g.clawed_back_fen for g in grants.book(state).grants.values()
    )
    return {name: value for name, value in out.items() if value}


def _net(record: claims.ClaimRecord) -> int:
    if record.reversed_index is not None:
        return 0
    return record.subsidy_fen - record.clawed_back_fen


def differences(live: dict[str, int], replayed: dict[str, int], limit: int = 10) -> list[str]:
    """What differs between a stored projection and a replay, first ``limit`` names."""
    names = sorted(set(live) | set(replayed))
    out = [
        f"{name}: stored {live.get(name, 0)}, replay {replayed.get(name, 0)}"
        for name in names
        if live.get(name, 0) != replayed.get(name, 0)
    ]
    return out[:limit]
