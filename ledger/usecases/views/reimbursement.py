"""The reimbursement queues, paged: the bureau's (filtered), a 区县's, a claimant's own."""

from __future__ import annotations

import bisect
from typing import Any

from ledger import reimbursement
from ledger.state import LedgerState

MAX_LIMIT = 500


def reimbursement_page(
    state: LedgerState,
    *,
    after: int = -1,
    limit: int = 100,
    round: str | None = None,
    programme: str | None = None,
    status: str | None = None,
    district: str | None = None,
    claimant: str | None = None,
) -> dict[str, Any]:
    """Claims in log order whose submission index is above ``after`` (the cursor), at most
    ``limit`` of them, filtered; ``next_after`` is the cursor of the next page (None: last)."""
    limit = max(1, min(limit, MAX_LIMIT))
    found = reimbursement.book(state)
    items: list[dict[str, Any]] = []
    more = False
    start = bisect.bisect_right(found.order, after, key=lambda cid: found.claims[cid].index)
    for claim_id in found.order[start:]:
        c = found.claims[claim_id]
        if not (
            (round is None or c.round == round)
            and (programme is None or c.programme == programme)
            and (status is None or c.status == status)
            and (district is None or c.district == district)
            and (claimant is None or c.claimant == claimant)
        ):
            continue
        if len(items) == limit:
            more = True
            break
        items.append(reimbursement.claim_view(state, claim_id))
    return {
        "count": len(items),
        "items": items,
        "next_after": items[-1]["index"] if more else None,
    }
