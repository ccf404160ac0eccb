"""Settlement statements (结算单): as recorded, listed, and what one would hold if issued now."""

from __future__ import annotations

from typing import Any

from ledger import settlement
from ledger.errors import LedgerError
from ledger.state import LedgerState
from ledger.timeutil import format_time
from ledger.usecases.views import Snapshot, proof_link


def _with_proofs(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "lines": [{**x, "proof": proof_link(x["claim_index"])} for x in body["lines"]]}


def statement(state: LedgerState, statement_id: str) -> dict[str, Any]:
    """A statement as recorded, with its log index, signers and inclusion proofs
    (``UNKNOWN_STATEMENT`` if there is none)."""
    view = settlement.statement_view(state, statement_id)
    return {
        **_with_proofs(view),
        "proof": proof_link(view["index"]),
        "entry": f"/v1/log/entries/{view['index']}",
    }


def statement_list(state: LedgerState, centre: str | None, period: str | None) -> dict[str, Any]:
    """Statements in log order (of one centre and period, if given), without their lines."""
    listed = settlement.statements_of(state, centre, period)
    return {
        "size": state.size,
        "statements": [{**s, "proof": proof_link(s["index"])} for s in listed],
    }


def pending_statement(snapshot: Snapshot, centre: str, period: str) -> dict[str, Any]:
    """What a statement for ``centre`` and ``period`` would hold if it were issued now
    (no lines when there is nothing to settle)."""
    state = snapshot.state
    try:
        body = settlement.statement_body(state, centre=centre, period=period, at=snapshot.now)
    except LedgerError as exc:
        if exc.reason != "NOTHING_TO_SETTLE":
            raise
        body = _empty(state, centre, period)
    unissued: dict[str, Any] = {
        "index": None,
        "at": None,
        "signed_by": [],
        "proof": None,
        "entry": None,
    }
    return {**_with_proofs({**body, "statement": None}), **unissued}


def _empty(state: LedgerState, centre: str, period: str) -> dict[str, Any]:
    found = settlement.parse_period(period)
    book = settlement.book(state)
    previous = book.by_centre.get(centre, [])
    return {
        "statement": None,
        "centre": centre,
        "period": found.text,
        "cadence": found.cadence,
        "period_start": format_time(found.start),
        "period_end": format_time(found.end),
        "sequence": book.sequences.get((centre, found.text), 0) + 1,
        "previous": previous[-1] if previous else None,
        "lines": [],
        "totals": settlement.totals_of([]),
    }
