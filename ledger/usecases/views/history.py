"""An entity's history: claims and captures, reversals, clawbacks and grants, in log order.

Each item has its log index and the link to its inclusion proof, and can be filtered by
centre, voucher, period (month ``2023-09``, quarter ``2023-Q3``, year ``2023``) or a date
range (Asia/Shanghai days, inclusive), by when it was recorded or (claims) by usage start.

The fold keeps what each clawback took in total, not the entries themselves, so the view
reads the clawback and reversal entries it needs through an :data:`EntryReader`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ledger import caps as caps_mod
from ledger import claims, grants, settlement, vouchers
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
    # thousands of claims, and every history page lists them all before paging
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


@dataclass
class _Entity:
    """What the history of one entity is made of."""

    claims: dict[tuple[str, str], claims.ClaimRecord]
    grants: dict[str, grants.Grant]
    items: list[Item]


def _collect(state: LedgerState, uscc: str) -> _Entity:
    book = claims.book(state)
    found = _Entity({}, {}, [])
    for voucher in vouchers.vouchers_of(state, uscc):
        for key in book.by_voucher.get(voucher.id, []):
            record = book.claims[key]
            found.claims[key] = record
            found.items.append(_claim_item(record, voucher, state))
            if record.reversed_index is not None:
                # its time and amount are filled in from the entry (entity_history)
                reversal = _correction(
                    found.items[-1], record.reversed_index, "claim.reverse", record.index, 0
                )
                found.items.append({**reversal, "at": None})
    for grant in grants.book(state).grants.values():
        if grant.payee == uscc:
            found.grants[grant.id] = grant
            found.items.append(_grant_item(grant))
    return found


def _clawback_indices(state: LedgerState) -> list[int]:
    """Every clawback leaves a forfeit charge ``forfeit:<index>`` (ledger.corrections);
    the entry at that index names its target."""
    prefix = "forfeit:"
    return [
        int(cid[len(prefix) :])
        for cid in caps_mod.book(state).charges
        if cid.startswith(prefix) and cid[len(prefix) :].isdigit()
    ]


def _clawback_item(
    state: LedgerState, found: _Entity, index: int, entry: Mapping[str, Any]
) -> tuple[Item, tuple[str, str] | None] | None:
    """The history item of one clawback entry, if it targets this entity's claim or grant;
    with the claim's key (None for a grant)."""
    body, target = entry["body"], entry["body"]["target"]
    amount = -int(body["amount_fen"])
    if "claim" in target:
        key = (target["claim"]["centre"], target["claim"]["record_id"])
        record = found.claims.get(key)
        if record is None:
            return None
        voucher = vouchers.voucher_of(state, record.voucher)
        base = _claim_item(record, voucher, state)
        return {
            **_correction(base, index, "clawback", record.index, amount),
            "at": entry["at"],
        }, key
    grant = found.grants.get(target.get("grant"))
    if grant is None:
        return None
    base = _grant_item(grant)
    return {**_correction(base, index, "clawback", grant.index, amount), "at": entry["at"]}, None


def entity_history(state: LedgerState, uscc: str, entries: EntryReader) -> list[Item]:
    """Every claim, capture, reversal, clawback and grant of the entity, in log order."""
    found = _collect(state, uscc)
    clawbacks = _clawback_indices(state)
    reversals = [i["index"] for i in found.items if i["kind"] == "claim.reverse"]
    read = entries(sorted(clawbacks + reversals))
    clawed: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for index in clawbacks:
        entry = read.get(index)
        if entry is None or entry.get("kind") != "clawback":
            continue
        made = _clawback_item(state, found, index, entry)
        if made is None:
            continue
        item, key = made
        if key is not None:
            clawed.setdefault(key, []).append((index, -item["subsidy_fen"]))
        found.items.append(item)
    for item in found.items:
        if item["kind"] == "claim.reverse":
            record = found.claims[(item["centre"], item["record_id"])]
            entry = read.get(item["index"])
            item["at"] = entry["at"] if entry else format_time(record.at)
            taken = clawed.get((record.centre, record.record_id), [])
            item["subsidy_fen"] = -(
                record.subsidy_fen - sum(a for i, a in taken if i < item["index"])
            )
    for item in found.items:
        item["proof"] = proof_link(item["index"])
    return sorted(found.items, key=lambda i: i["index"])


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
    every = chosen.apply(entity_history(state, uscc, entries))
    items = [i for i in every if i["index"] > after]
    page = items if limit is None else items[:limit]
    more = limit is not None and len(items) > limit
    return {
        "size": state.size,
        "uscc": uscc,
        "items": page,
        "totals": _totals(page),
        "overall_totals": _totals(every),
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
