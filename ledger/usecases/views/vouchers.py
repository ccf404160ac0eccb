"""Vouchers as the bureau sees them: status, balance, every remaining cap, history."""

from __future__ import annotations

from typing import Any

from ledger import vouchers
from ledger.usecases.views import Snapshot


def matching_vouchers(
    snapshot: Snapshot,
    *,
    holder: str | None = None,
    programme: str | None = None,
    status: str | None = None,
) -> list[vouchers.Voucher]:
    """Vouchers in issue order (by log index), filtered by holder, programme and status
    now; cheap (no balances), so that a page of them can be viewed alone."""
    found = [
        v
        for v in vouchers.book(snapshot.state).vouchers.values()
        if (holder is None or v.holder == holder)
        and (programme is None or v.programme == programme)
        and (status is None or v.status_at(snapshot.now) == status)
    ]
    return sorted(found, key=lambda v: v.log_index)


def voucher_list(
    snapshot: Snapshot,
    *,
    holder: str | None = None,
    programme: str | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """Vouchers in issue order (``vouchers.voucher_view`` now), filtered by holder,
    programme and status."""
    found = matching_vouchers(snapshot, holder=holder, programme=programme, status=status)
    return [vouchers.voucher_view(snapshot.state, v.id, snapshot.now) for v in found]
