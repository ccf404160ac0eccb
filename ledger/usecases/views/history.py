"""An entity's history: claims and captures, reversals, clawbacks and grants, in log order.

Each item has its log index and the link to its inclusion proof, and can be filtered by
centre, voucher, period (month ``2023-09``, quarter ``2023-Q3``, year ``2023``) or a date
range (Asia/Shanghai days, inclusive), by when it was recorded or (claims) by usage start.

The fold keeps each entity's history items in log order and their totals
(``ledger.reports``), so an unfiltered page builds only its own items; a filtered one
builds the entity's items (never the ledger's). The fold keeps what each correction took,
not its entry, so the view reads the reversal and clawback entries of the items it builds
through an :data:`EntryReader`, for their times.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ledger import claims, grants, reports, settlement, vouchers
from ledger.errors import InvalidInput
from ledger.money import apply_rate
from ledger.settlement import FIRST_YEAR, LAST_YEAR, parse_period
from ledger.state import LedgerState
from ledger.timeutil import (
    format_micros,
    format_time,
    parse_time,
    shanghai_date,
    shanghai_end,
    shanghai_start,
)
from ledger.usecases.views import EntryReader, proof_link

Item = dict[str, Any]
_NO_USAGE = {"resource": None, "quantity": None, "usage_start": None, "usage_end": None}


def _claim_item(record: claims.ClaimRecord, voucher: vouchers.Voucher, state: LedgerState) -> Item:
    # straight from the record's fields (not its rebuilt body): an entity may have
    # thousands of claims, and a filtered history lists them all before paging
    settled = settlement.settlement_of_claim(state, record.centre, record.record_id)
    return {
        "index": record.index,
        "at": format_micros(record.at_us),
        "kind": record.kind,
        "centre": record.centre,
        "voucher": voucher.id,
        "round": voucher.round,
        "programme": voucher.programme,
        "record_id": record.record_id,
        "grant": None,
        "resource": record.resource,
        "quantity": record.quantity,
        "usage_start": format_micros(record.start_us),
        "usage_end": format_micros(record.end_us),
        "cost_fen": record.cost_fen,
        "subsidy_fen": record.subsidy_fen,
        "net_fen": record.net_fen,
        "binding_cap": record.bound_by,
        "statement": settled["statement"] if settled else None,
        "corrects": None,
        "wanted_fen": apply_rate(record.cost_fen, record.rate_bp),
    }


def _correction(base: Item, index: int, kind: str, corrects: int, subsidy_fen: int) -> Item:
    """An item that corrects ``corrects`` (a reversal or clawback): no cost, no net."""
    return {
        **base,
        "index": index,
        "kind": kind,
        "corrects": corrects,
        "cost_fen": 0,
        "subsidy_fen": subsidy_fen,
        "net_fen": None,
        "binding_cap": None,
        "statement": None,
        "wanted_fen": None,
    }


def _grant_item(grant: grants.Grant) -> Item:
    return {
        "index": grant.index,
        "at": format_time(grant.at),
        "kind": "grant.pay",
        "centre": None,
        "voucher": None,
        "round": grant.round,
        "programme": grant.programme,
        "record_id": None,
        "grant": grant.id,
        **_NO_USAGE,
        "cost_fen": 0,
        "subsidy_fen": grant.paid_fen,
        "net_fen": grant.net_fen,
        "binding_cap": grant.bound_by,
        "statement": None,
        "corrects": None,
        "wanted_fen": None,
    }


def _item(
    state: LedgerState, mark: reports.Mark, read: Mapping[int, Mapping[str, Any]]
) -> Item | None:
    """The history item of ``mark``: a correction takes its time from its entry in ``read``
    (None for a clawback whose entry was not read)."""
    if isinstance(mark.target, str):
        grant = grants.book(state).grants[mark.target]
        base = _grant_item(grant)
        target_index = grant.index
    else:
        record = claims.book(state).claims[mark.target]
        base = _claim_item(record, vouchers.voucher_of(state, record.voucher), state)
        target_index = record.index
    if mark.kind not in ("claim.reverse", "clawback"):
        return {**base, "proof": proof_link(mark.index)}
    entry = read.get(mark.index)
    if entry is not None and entry.get("kind") == mark.kind:
        at = entry["at"]
    elif mark.kind == "claim.reverse":
        at = base["at"]  # the reversal's entry unread: the claim's own time, as it always was
    else:
        return None
    item = _correction(base, mark.index, mark.kind, target_index, mark.subsidy_fen)
    return {**item, "at": at, "proof": proof_link(mark.index)}


def _items(state: LedgerState, marks: Sequence[reports.Mark], entries: EntryReader) -> list[Item]:
    """The items of ``marks``, in their order; only the corrections' entries are read."""
    read = entries([m.index for m in marks if m.kind in ("claim.reverse", "clawback")])
    made = (_item(state, mark, read) for mark in marks)
    return [item for item in made if item is not None]


def entity_history(state: LedgerState, uscc: str, entries: EntryReader) -> list[Item]:
    """Every claim, capture, reversal, clawback and grant of the entity, in log order."""
    return _items(state, reports.history_of(state, uscc).marks, entries)


@dataclass(frozen=True)
class HistoryFilter:
    """Which items to keep: of one centre, one voucher, a period or a date range."""

    centre: str | None = None
    voucher: str | None = None
    period: str | None = None
    start: date | None = None
    end: date | None = None
    basis: str = "recorded"  # or "usage": claims by usage start

    def window(self) -> tuple[datetime | None, datetime | None]:
        period, start, end = self.period, self.start, self.end
        if period is not None and (start is not None or end is not None):
            raise InvalidInput("give either period or from/to, not both", reason="MALFORMED_PERIOD")
        if period is not None:
            found = parse_period(period)
            return found.start, found.end
        for name, day in (("from", start), ("to", end)):
            if day is not None and not FIRST_YEAR <= day.year <= LAST_YEAR:
                raise InvalidInput(
                    f"{name}: {day} is outside the years {FIRST_YEAR}-{LAST_YEAR}",
                    reason="MALFORMED_PERIOD",
                )
        if start is not None and end is not None and end < start:
            raise InvalidInput(f"to ({end}) is before from ({start})", reason="MALFORMED_PERIOD")
        return (
            shanghai_start(start) if start is not None else None,
            shanghai_end(end) if end is not None else None,
        )

    def keeps_all(self) -> bool:
        return (self.centre, self.voucher, self.period, self.start, self.end) == (None,) * 5

    def apply(self, items: Sequence[Item]) -> list[Item]:
        low, high = self.window()
        out = []
        for item in items:
            if self.centre is not None and item["centre"] != self.centre:
                continue
            if self.voucher is not None and item["voucher"] != self.voucher:
                continue
            if low is not None or high is not None:
                when_text = item["at"]
                if self.basis == "usage" and item["kind"] in ("claim", "capture"):
                    when_text = item["usage_start"]
                when = parse_time(when_text)
                if (low is not None and when < low) or (high is not None and when >= high):
                    continue
            out.append(item)
        return out


def history_page(
    state: LedgerState,
    uscc: str,
    entries: EntryReader,
    chosen: HistoryFilter,
    *,
    after: int = -1,
    limit: int | None = None,
) -> dict[str, Any]:
    """One page of the entity's filtered history (items after ``after``, at most ``limit``),
    with the totals of the page, the totals of every item the filter keeps (all pages), and
    where the next page starts."""
    chosen.window()  # refuses a malformed filter, whichever path answers
    history = reports.history_of(state, uscc)
    if chosen.keeps_all():
        marks = history.marks
        first = bisect_right(marks, after, key=lambda mark: mark.index)
        # one item more than the page, to know whether a next page starts
        last = len(marks) if limit is None else first + limit + 1
        items = _items(state, marks[first:last], entries)
        overall = {
            "items": len(marks),
            "cost_fen": history.cost_fen,
            "subsidy_fen": history.subsidy_fen,
        }
    else:
        every = chosen.apply(_items(state, history.marks, entries))
        items = [i for i in every if i["index"] > after]
        overall = _totals(every)
    page = items if limit is None else items[:limit]
    more = limit is not None and len(items) > limit
    return {
        "size": state.size,
        "uscc": uscc,
        "items": page,
        "totals": _totals(page),
        "overall_totals": overall,
        "next_after": page[-1]["index"] if more and page else None,
    }


def usage_month(item: Item) -> str:
    """The month (Asia/Shanghai, ``YYYY-MM``) an item counts in: a claim's usage start (its
    corrections count with it), a grant's payment time."""
    when = item["usage_start"] or item["at"]
    return shanghai_date(parse_time(when)).strftime("%Y-%m")


def history_summary(
    state: LedgerState, uscc: str, entries: EntryReader, chosen: HistoryFilter
) -> dict[str, Any]:
    """Overall totals of the entity's filtered history and the same by usage month: the
    whole history, not a page, so a chart of it matches the balances."""
    months: dict[str, dict[str, Any]] = {}
    totals = {"items": 0, "cost_fen": 0, "subsidy_fen": 0, "uncovered_fen": 0}
    for item in chosen.apply(entity_history(state, uscc, entries)):
        month = months.setdefault(
            usage_month(item),
            {"month": usage_month(item), "items": 0, "cost_fen": 0, "subsidy_fen": 0},
        )
        month["items"] += 1
        month["cost_fen"] += item["cost_fen"]
        month["subsidy_fen"] += item["subsidy_fen"]
        totals["items"] += 1
        totals["cost_fen"] += item["cost_fen"]
        totals["subsidy_fen"] += item["subsidy_fen"]
        if item["wanted_fen"] is not None:
            totals["uncovered_fen"] += item["wanted_fen"] - item["subsidy_fen"]
    return {
        "size": state.size,
        "uscc": uscc,
        "totals": totals,
        "months": [months[m] for m in sorted(months)],
    }


def _totals(items: Sequence[Item]) -> dict[str, int]:
    return {
        "items": len(items),
        "cost_fen": sum(i["cost_fen"] for i in items),
        "subsidy_fen": sum(i["subsidy_fen"] for i in items),
    }
