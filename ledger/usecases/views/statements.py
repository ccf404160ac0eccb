"""Settlement statements (结算单): as recorded, listed, their lines page by page, and what
one would hold if it were issued now."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ledger import claims, settlement
from ledger.errors import InvalidInput
from ledger.state import LedgerState
from ledger.usecases.views import EntryReader, Snapshot, proof_link

MAX_LINES = 5000  # lines a page holds at most


def with_record(state: LedgerState, centre: str, line: Mapping[str, Any]) -> dict[str, Any]:
    """A statement line as its readers see it: with the record id of its claim (which the
    log does not publish: a line points at its claim by log index) and its proof."""
    record = claims.claim_at(state, centre, int(line["claim_index"]))
    return {
        **line,
        "record_id": record.record_id if record is not None else None,
        "proof": proof_link(line["claim_index"]),
    }


def statement(state: LedgerState, statement_id: str) -> dict[str, Any]:
    """A statement's header, status, totals and parts, with proofs (``UNKNOWN_STATEMENT`` if
    there is none). Its lines are read page by page (:func:`statement_lines`)."""
    view = settlement.statement_view(state, statement_id)
    closed = view["closed_index"]
    return {
        **view,
        "proof": proof_link(closed if closed is not None else view["index"]),
        "entry": f"/v1/log/entries/{view['index']}",
    }


def statement_list(state: LedgerState, centre: str | None, period: str | None) -> dict[str, Any]:
    """Statements in log order (of one centre and period, if given), without their lines."""
    listed = settlement.statements_of(state, centre, period)
    return {
        "size": state.size,
        "statements": [{**s, "proof": proof_link(s["index"])} for s in listed],
    }


def _check_page(after: int, limit: int) -> None:
    if after < 0:
        raise InvalidInput(f"after must be 0 or more, got {after}", reason="OUT_OF_RANGE")
    if not 1 <= limit <= MAX_LINES:
        raise InvalidInput(f"limit must be 1..{MAX_LINES}, got {limit}", reason="OUT_OF_RANGE")


def statement_lines(
    state: LedgerState,
    statement_id: str,
    entries: EntryReader,
    *,
    after: int = 0,
    limit: int = 1000,
) -> dict[str, Any]:
    """The lines after line ``after`` (at most ``limit``), read from the statement's
    ``statement.lines`` entries, each with its claim's inclusion proof; ``next`` is the
    ``after`` of the next page (None at the end)."""
    _check_page(after, limit)
    found = settlement.statement_of(state, statement_id)
    lines: list[dict[str, Any]] = []
    read: list[int] = []
    for index, first, count in found.parts:
        if first + count - 1 <= after:
            continue
        if len(lines) >= limit:
            break
        read.append(index)
        body = entries([index])[index]["body"]
        for number, line in enumerate(body["lines"], start=first):
            if number > after and len(lines) < limit:
                lines.append(with_record(state, found.centre, line))
    last = lines[-1]["line"] if lines else after
    return {
        "statement": statement_id,
        "size": state.size,
        "lines": lines,
        "next": last if last < found.lines else None,
        "entries": read,  # the statement.lines entries the page came from
    }


def all_statement_lines(
    state: LedgerState, statement_id: str, entries: EntryReader, batch: int = 16
) -> Iterator[dict[str, Any]]:
    """Every line of a statement in order, read ``batch`` entries (~3,000 lines) at a time:
    an export holds no more than that, whatever the statement's size."""
    found = settlement.statement_of(state, statement_id)
    for start in range(0, len(found.parts), batch):
        indices = [index for index, _, _ in found.parts[start : start + batch]]
        bodies = entries(indices)
        for index in indices:
            for line in bodies[index]["body"]["lines"]:
                yield with_record(state, found.centre, line)


def pending_statement(
    snapshot: Snapshot, centre: str, period: str, *, after: int = 0, limit: int = 1000
) -> dict[str, Any]:
    """What a statement for ``centre`` and ``period`` would hold if it were opened now: its
    header, overall totals and the chain (every line counted), and one page of lines."""
    _check_page(after, limit)
    summary, page = settlement.pending(snapshot.state, centre, period, after=after, limit=limit)
    lines = summary["totals"]["lines"]
    last = page[-1]["line"] if page else after
    return {
        **summary,
        "statement": None,
        "size": snapshot.state.size,
        "lines": [with_record(snapshot.state, centre, x) for x in page],
        "next": last if last < lines else None,
    }
