"""Vouchers as the bureau sees them: status, balance, every remaining cap, history."""

from __future__ import annotations

from typing import Any

from ledger import vouchers
from ledger.usecases.views import Snapshot


def voucher_list(
    snapshot: Snapshot,
    *,
    holder: str | None = None,
    programme: str | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """Vouchers in issue order (``vouchers.voucher_view`` now), filtered by holder,
    programme and status."""
    found = []
    for v in vouchers.book(snapshot.state).vouchers.values():
        if (holder is None or v.holder == holder) and (
            programme is None or v.programme == programme
        ):
            view = vouchers.voucher_view(snapshot.state, v.id, snapshot.now)
            if status is None or view["status"] == status:
                found.append(view)
    return found
