"""The application queues: the bureau's (filtered), a 区县's, an applicant's own."""

from __future__ import annotations

from typing import Any

from ledger import applications
from ledger.state import LedgerState


def application_list(
    state: LedgerState,
    *,
    programme: str | None = None,
    status: str | None = None,
    district: str | None = None,
    round: str | None = None,
    applicant: str | None = None,
) -> list[dict[str, Any]]:
    """Applications in log order (``applications.application_view``), filtered by
    programme, status, 区县, round and applicant."""
    return [
        applications.application_view(state, app.id)
        for app in applications.book(state).applications.values()
        if (programme is None or app.programme == programme)
        and (status is None or app.status == status)
        and (district is None or app.district == district)
        and (round is None or app.round == round)
        and (applicant is None or app.applicant == applicant)
    ]
