"""The grantee's API: my vouchers, balances, every remaining cap, and my history.

``/v1/me/...`` answers for the entity of the grantee token (role ``grantee``).
``/v1/entities/{uscc}/...`` answers the same for any entity to ``auditor`` and ``admin``
tokens, and to a grantee for its own entity only (any other: 403 ``NOT_YOUR_ENTITY``).
Everything is read from the fold of the committed log and changes nothing. The shapes are
documented in ``docs/api-grantee.md`` (the web page reads them).

* ``GET …/vouchers``: each voucher with its balance and what remains under each of its
  caps; every cap that applies to the entity by name (voucher, period, entity_programme,
  entity_round, programme_pool, voucher_pool) with its limit, used, held and remaining;
  and which cap bound the entity's last claim.
* ``GET …/vouchers/{voucher}``: one voucher, its caps and its claims.
* ``GET …/history`` (and ``.csv`` / ``.xlsx``): claims and captures, reversals,
  clawbacks and grants, each with its log index and a link to its inclusion proof
  (``/v1/log/proof/inclusion?index=N``), filtered by centre, voucher, period (month
  ``2023-09``, quarter ``2023-Q3``, year ``2023``) or a date range (``from``/``to``,
  Asia/Shanghai days, inclusive).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api import exports
from api.auth import bearer, check_entity, require
from api.bootstrap import Service
from api.errors import problem_responses
from ledger import caps as caps_mod
from ledger import claims as claims_mod
from ledger import entities as entities_mod
from ledger import grants as grants_mod
from ledger import settlement, vouchers
from ledger.errors import Denied, InvalidInput, NotFound
from ledger.policy import current_policy
from ledger.settlement import FIRST_YEAR, LAST_YEAR, parse_period
from ledger.state import LedgerState
from ledger.store.tokens import Principal
from ledger.timeutil import SHANGHAI, format_time, parse_time, shanghai_end, shanghai_start
from ledger.uscc import validate as validate_uscc

READ_ROLES = ("grantee", "auditor", "admin")
PROOF = "/v1/log/proof/inclusion?index={}"
USCC_PATTERN = r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$"

router = APIRouter(
    tags=["grantee"],
    dependencies=[Depends(bearer)],
    responses=problem_responses(400, 401, 403, 404),
)


# --- reading the ledger --------------------------------------------------------------------


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


@contextmanager
def reading(request: Request) -> Iterator[tuple[LedgerState, datetime]]:
    """The fold at the committed log, held still, and "now": the service clock, never
    behind the ledger's own time."""
    ledger = service_of(request).ledger
    with ledger.reading() as state:
        now = ledger.clock()
        if state.time is not None and state.time > now:
            now = state.time
        yield state, now


def proof_link(index: int) -> str:
    return PROOF.format(index)


# --- caps by name ----------------------------------------------------------------------------

SCOPES = {
    "voucher": "voucher",
    "period": "period",
    "entity_programme": "programme",
    "entity_round": "entity",
    "programme_pool": "pool",
    "voucher_pool": "pool",
}


def cap_label(state: LedgerState, round_id: str, key: caps_mod.Key) -> str:
    """A cap's name for people, Chinese first: 凭证面值 V-1, 单位项目上限 (四) …, …"""
    name = str(key[0])
    try:
        policy = current_policy(state, round_id)
    except NotFound:
        policy = None

    def programme(pid: object) -> str:
        if policy is not None and str(pid) in policy.programmes:
            p = policy.programmes[str(pid)]
            return f"({p.number}) {p.title}"
        return str(pid)

    if name == "voucher":
        label = f"凭证面值 {key[1]}"
    elif name == "period" and len(key) == 3:  # voucher years: (period, voucher, n)
        label = f"年度上限 {key[1]} 第{key[2]}年"
    elif name == "period":  # calendar years: (period, round, programme, holder, year)
        label = f"年度上限 {programme(key[2])} {key[4]}年"
    elif name == "entity_programme":
        label = f"单位项目上限 {programme(key[2])}"
    elif name == "entity_round":
        label = f"单位跨项目年度上限 {key[3]}年"
    elif name == "programme_pool":
        label = f"项目资金池 {programme(key[2])} {key[3]}年"
    elif name == "voucher_pool":
        pool = policy.voucher_pools.get(str(key[1])) if policy is not None else None
        label = f"{pool.name if pool else key[1]} {key[2]}年"
    else:
        label = caps_mod.key_text(key)
    return label


class CapOut(BaseModel):
    name: str = Field(
        description="the cap's counter key, e.g. voucher/V-1, "
        "programme_pool/chengdu-2023-31/ai-model/2023"
    )
    cap: str = Field(
        description="voucher, period, entity_programme, entity_round, "
        "programme_pool or voucher_pool (what a claim's bound_by names)"
    )
    scope: str = Field(description="voucher, period, programme, entity or pool")
    label: str = Field(description="the cap for people, Chinese")
    limit_fen: int
    used_fen: int = Field(
        description="counted: claims and grants (net), forfeits; "
        "entity-wide or pool-wide for shared caps"
    )
    held_fen: int = Field(description="open holds counted against it")
    remaining_fen: int = Field(description="limit - used - held, never below 0")
    binding: bool = Field(description="this cap bound the entity's last claim")
    vouchers: list[str] = Field(description="the entity's vouchers this cap applies to")


def _voucher_lines(
    state: LedgerState, voucher: vouchers.Voucher, now: datetime
) -> tuple[caps_mod.CapLine, ...]:
    usage_at = min(max(now, voucher.usage_start), voucher.usage_end)
    lines, _ = vouchers.cap_lines(state, voucher, usage_at, now)
    return lines


def _last_claim(state: LedgerState, held: list[vouchers.Voucher]) -> dict[str, Any] | None:
    """The entity's latest claim and the key of the cap that bound it (None: the rate)."""
    book = claims_mod.book(state)
    latest: claims_mod.ClaimRecord | None = None
    for voucher in held:
        keys = book.by_voucher.get(voucher.id, [])
        if keys:
            record = book.claims[keys[-1]]
            if latest is None or record.index > latest.index:
                latest = record
    if latest is None:
        return None
    bound_by = str(latest.result.get("bound_by", ""))
    voucher = vouchers.voucher_of(state, latest.voucher)
    key = None
    if bound_by in caps_mod.CAP_ORDER:
        start = parse_time(latest.body["start"])
        lines, _ = vouchers.cap_lines(state, voucher, start, latest.at)
        key = next((caps_mod.key_text(x.key) for x in lines if x.name == bound_by), None)
    return {
        "index": latest.index,
        "at": format_time(latest.at),
        "centre": latest.centre,
        "record_id": latest.record_id,
        "voucher": latest.voucher,
        "subsidy_fen": latest.subsidy_fen,
        "bound_by": bound_by,
        "cap": key,
        "proof": proof_link(latest.index),
    }


def entity_caps(
    state: LedgerState, held: list[vouchers.Voucher], now: datetime, binding: str | None
) -> list[dict[str, Any]]:
    """Every cap that applies to the entity's vouchers now, by name, narrowest first."""
    book = caps_mod.book(state)
    adjust = book.adjustments(now)
    found: dict[caps_mod.Key, dict[str, Any]] = {}
    for voucher in held:
        for line in _voucher_lines(state, voucher, now):
            if line.limit is None:
                continue
            row = found.get(line.key)
            if row is None:
                used = book.used.get(line.key, 0)
                on_hold = book.held.get(line.key, 0) - adjust.get(line.key, 0)
                name = caps_mod.key_text(line.key)
                row = found[line.key] = {
                    "name": name,
                    "cap": line.name,
                    "scope": SCOPES.get(line.name, line.name),
                    "label": cap_label(state, voucher.round, line.key),
                    "limit_fen": line.limit,
                    "used_fen": used,
                    "held_fen": on_hold,
                    "remaining_fen": max(0, line.limit - used - on_hold),
                    "binding": name == binding,
                    "vouchers": [],
                }
            row["vouchers"].append(voucher.id)
    return sorted(found.values(), key=lambda r: (caps_mod.CAP_ORDER.index(r["cap"]), r["name"]))


# --- vouchers --------------------------------------------------------------------------------


class EntityOut(BaseModel):
    uscc: str
    name: str | None = Field(description="null when the entity is not registered yet")
    type: str | None
    district: str | None
    blacklisted: bool


class VoucherOut(BaseModel):
    id: str
    application: str
    round: str
    programme: str
    programme_label: str
    holder: str
    status: str = Field(description="active, suspended, revoked or expired")
    face_value_fen: int
    used_fen: int = Field(description="net subsidy paid on it, and forfeits of clawbacks")
    held_fen: int = Field(description="open holds")
    balance_fen: int = Field(description="face value - used - held")
    available_fen: int = Field(
        description="the most the next claim can get: the smallest "
        "remaining cap (the balance is one of them)"
    )
    rate_bp: int
    usage_start: str
    usage_end: str
    valid_from: str
    valid_until: str
    centres: list[str]
    caps: dict[str, int] = Field(description="remaining fen under each cap, by cap name")
    last_bound_by: str | None = Field(description="the cap (or 'rate') of its last claim")
    claims: int
    subsidy_fen: int = Field(description="net subsidy of its claims")
    log_index: int
    proof: str
    policy_version: str
    credential: str = Field(description="the voucher as a JWS (EdDSA) signed by the issuer")


def voucher_out(state: LedgerState, voucher: vouchers.Voucher, now: datetime) -> dict[str, Any]:
    view = vouchers.voucher_view(state, voucher.id, now)
    try:
        label = current_policy(state, voucher.round).programme(voucher.programme).label
    except NotFound:
        label = voucher.programme
    records = [
        claims_mod.book(state).claims[k]
        for k in claims_mod.book(state).by_voucher.get(voucher.id, [])
    ]
    remaining = dict(view["caps"])
    return {
        "id": voucher.id,
        "application": voucher.application,
        "round": voucher.round,
        "programme": voucher.programme,
        "programme_label": label,
        "holder": voucher.holder,
        "status": view["status"],
        "face_value_fen": voucher.face_value_fen,
        "used_fen": view["used_fen"],
        "held_fen": view["held_fen"],
        "balance_fen": view["balance_fen"],
        "available_fen": max(0, min(remaining.values(), default=0)),
        "rate_bp": voucher.rate_bp,
        "usage_start": view["usage_window"]["start"],
        "usage_end": view["usage_window"]["end"],
        "valid_from": view["valid"]["from"],
        "valid_until": view["valid"]["until"],
        "centres": list(voucher.centres),
        "caps": remaining,
        "last_bound_by": voucher.last_bound_by,
        "claims": len(records),
        "subsidy_fen": sum(r.net_fen for r in records),
        "log_index": voucher.log_index,
        "proof": proof_link(voucher.log_index),
        "policy_version": voucher.policy_version,
        "credential": voucher.credential,
    }


class LastClaim(BaseModel):
    index: int
    at: str
    centre: str
    record_id: str
    voucher: str
    subsidy_fen: int
    bound_by: str = Field(description="the cap name, or 'rate' when no cap bound it")
    cap: str | None = Field(description="the key of the cap that bound it (CapOut.name)")
    proof: str


class Totals(BaseModel):
    face_value_fen: int
    used_fen: int
    held_fen: int
    balance_fen: int
    subsidy_fen: int = Field(description="net subsidy of all its claims")
    grants_fen: int = Field(description="net one-time grants paid to it")


class EntityVouchers(BaseModel):
    size: int = Field(description="the log size this answer was read at")
    as_of: str = Field(description="the time remaining caps are computed for")
    entity: EntityOut
    vouchers: list[VoucherOut]
    caps: list[CapOut]
    last_binding_cap: str | None = Field(
        description="CapOut.name of the cap that bound the last claim; null: none did"
    )
    last_claim: LastClaim | None
    totals: Totals


def _entity(state: LedgerState, uscc: str) -> dict[str, Any]:
    found = entities_mod.book(state).entities.get(uscc)
    if found is None:
        return {"uscc": uscc, "name": None, "type": None, "district": None, "blacklisted": False}
    return {
        "uscc": uscc,
        "name": found.name,
        "type": found.type,
        "district": found.district,
        "blacklisted": found.blacklisted is not None,
    }


def entity_vouchers(state: LedgerState, uscc: str, now: datetime) -> dict[str, Any]:
    held = list(vouchers.vouchers_of(state, uscc))
    last = _last_claim(state, held)
    binding = last["cap"] if last else None
    out = [voucher_out(state, v, now) for v in held]
    grants = [g for g in grants_mod.book(state).grants.values() if g.payee == uscc]
    return {
        "size": state.size,
        "as_of": format_time(now),
        "entity": _entity(state, uscc),
        "vouchers": out,
        "caps": entity_caps(state, held, now, binding),
        "last_binding_cap": binding,
        "last_claim": last,
        "totals": {
            "face_value_fen": sum(v["face_value_fen"] for v in out),
            "used_fen": sum(v["used_fen"] for v in out),
            "held_fen": sum(v["held_fen"] for v in out),
            "balance_fen": sum(v["balance_fen"] for v in out),
            "subsidy_fen": sum(v["subsidy_fen"] for v in out),
            "grants_fen": sum(g.net_fen for g in grants),
        },
    }


# --- history ---------------------------------------------------------------------------------


class HistoryItem(BaseModel):
    index: int = Field(description="the entry's log index")
    at: str = Field(description="the entry's time, RFC 3339 UTC")
    kind: str = Field(description="claim, capture, claim.reverse, clawback or grant.pay")
    centre: str | None
    voucher: str | None
    round: str
    programme: str
    record_id: str | None
    grant: str | None
    resource: str | None
    quantity: int | None
    usage_start: str | None
    usage_end: str | None
    cost_fen: int = Field(description="the usage's cost (claims; 0 for other kinds)")
    subsidy_fen: int = Field(
        description="the change to the subsidy: + a claim's or grant's amount as decided, "
        "- a reversal or clawback; their sum is the net subsidy"
    )
    net_fen: int | None = Field(description="claims and grants: net after later corrections")
    binding_cap: str | None = Field(description="claims and grants: the cap that bound it")
    statement: str | None = Field(description="claims: the statement that settled it")
    corrects: int | None = Field(description="corrections: the log index of the claim/grant")
    proof: str = Field(description="its inclusion proof: /v1/log/proof/inclusion?index=N")


class HistoryTotals(BaseModel):
    items: int
    cost_fen: int
    subsidy_fen: int


class History(BaseModel):
    size: int
    uscc: str
    items: list[HistoryItem]
    totals: HistoryTotals = Field(description="over the items returned")
    next_after: int | None = Field(description="pass as after= for the next page; null: none")


_cache_lock = threading.Lock()


def _entries(request: Request, indices: list[int]) -> dict[int, dict[str, Any]]:
    """Entries by index as JSON, cached per app (the log never changes)."""
    state = request.app.state
    with _cache_lock:
        cache: dict[int, dict[str, Any]] | None = getattr(state, "grantee_entry_cache", None)
        if cache is None:
            cache = state.grantee_entry_cache = {}
        wanted = [i for i in indices if i not in cache]
    store = service_of(request).ledger.store
    for index in wanted:
        rows = store.entries(index, index + 1)
        if rows:
            parsed = json.loads(rows[0])
            with _cache_lock:
                cache[index] = parsed
    with _cache_lock:
        return {i: cache[i] for i in indices if i in cache}


def _claim_items(
    state: LedgerState, held: list[vouchers.Voucher]
) -> tuple[list[dict[str, Any]], dict[tuple[str, str], claims_mod.ClaimRecord]]:
    book = claims_mod.book(state)
    items = []
    mine: dict[tuple[str, str], claims_mod.ClaimRecord] = {}
    for voucher in held:
        for key in book.by_voucher.get(voucher.id, []):
            record = book.claims[key]
            mine[key] = record
            body = record.body
            settled = settlement.settlement_of_claim(state, record.centre, record.record_id)
            items.append(
                {
                    "index": record.index,
                    "at": format_time(record.at),
                    "kind": record.kind,
                    "centre": record.centre,
                    "voucher": voucher.id,
                    "round": voucher.round,
                    "programme": voucher.programme,
                    "record_id": record.record_id,
                    "grant": None,
                    "resource": body.get("resource"),
                    "quantity": body.get("quantity"),
                    "usage_start": body.get("start"),
                    "usage_end": body.get("end"),
                    "cost_fen": int(record.result.get("cost_fen", 0)),
                    "subsidy_fen": record.subsidy_fen,
                    "net_fen": record.net_fen,
                    "binding_cap": record.result.get("bound_by"),
                    "statement": settled["statement"] if settled else None,
                    "corrects": None,
                }
            )
            if record.reversed_index is not None:
                items.append(
                    {
                        **items[-1],
                        "index": record.reversed_index,
                        "kind": "claim.reverse",
                        "cost_fen": 0,
                        "subsidy_fen": 0,  # filled in below: what remained before it
                        "net_fen": None,
                        "binding_cap": None,
                        "statement": None,
                        "corrects": record.index,
                        "at": None,
                    }
                )
    return items, mine


def entity_history(request: Request, state: LedgerState, uscc: str) -> list[dict[str, Any]]:
    """Every claim, capture, reversal, clawback and grant of the entity, in log order."""
    held = list(vouchers.vouchers_of(state, uscc))
    items, mine = _claim_items(state, held)
    grants = {g.id: g for g in grants_mod.book(state).grants.values() if g.payee == uscc}
    for g in grants.values():
        items.append(
            {
                "index": g.index,
                "at": format_time(g.at),
                "kind": "grant.pay",
                "centre": None,
                "voucher": None,
                "round": g.round,
                "programme": g.programme,
                "record_id": None,
                "grant": g.id,
                "resource": None,
                "quantity": None,
                "usage_start": None,
                "usage_end": None,
                "cost_fen": 0,
                "subsidy_fen": g.paid_fen,
                "net_fen": g.net_fen,
                "binding_cap": g.bound_by,
                "statement": None,
                "corrects": None,
            }
        )
    # Clawbacks: each leaves a forfeit charge "forfeit:<index>" (ledger.corrections); the
    # entry at that index names its target.
    clawbacks = [
        int(cid.split(":", 1)[1])
        for cid in caps_mod.book(state).charges
        if cid.startswith("forfeit:") and cid.split(":", 1)[1].isdigit()
    ]
    reversals = [i["index"] for i in items if i["kind"] == "claim.reverse"]
    entries = _entries(request, sorted(clawbacks + reversals))
    clawed: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for index in clawbacks:
        entry = entries.get(index)
        if entry is None or entry.get("kind") != "clawback":
            continue
        body, target = entry["body"], entry["body"]["target"]
        if "claim" in target:
            key = (target["claim"]["centre"], target["claim"]["record_id"])
            record = mine.get(key)
            if record is None:
                continue
            clawed.setdefault(key, []).append((index, body["amount_fen"]))
            voucher = vouchers.voucher_of(state, record.voucher)
            base: dict[str, Any] = {
                "centre": record.centre,
                "voucher": record.voucher,
                "round": voucher.round,
                "programme": voucher.programme,
                "record_id": record.record_id,
                "grant": None,
                "corrects": record.index,
                "resource": record.body.get("resource"),
                "quantity": record.body.get("quantity"),
                "usage_start": record.body.get("start"),
                "usage_end": record.body.get("end"),
            }
        else:
            grant = grants.get(target.get("grant"))
            if grant is None:
                continue
            base = {
                "centre": None,
                "voucher": None,
                "round": grant.round,
                "programme": grant.programme,
                "record_id": None,
                "grant": grant.id,
                "corrects": grant.index,
                "resource": None,
                "quantity": None,
                "usage_start": None,
                "usage_end": None,
            }
        items.append(
            {
                **base,
                "index": index,
                "at": entry["at"],
                "kind": "clawback",
                "cost_fen": 0,
                "subsidy_fen": -int(body["amount_fen"]),
                "net_fen": None,
                "binding_cap": None,
                "statement": None,
            }
        )
    for item in items:
        if item["kind"] != "claim.reverse":
            continue
        entry = entries.get(item["index"])
        record = mine[(item["centre"], item["record_id"])]
        item["at"] = entry["at"] if entry else format_time(record.at)
        before = record.subsidy_fen - sum(
            amount
            for i, amount in clawed.get((record.centre, record.record_id), [])
            if i < item["index"]
        )
        item["subsidy_fen"] = -before
    for item in items:
        item["proof"] = proof_link(item["index"])
    items.sort(key=lambda i: i["index"])
    return items


def _window(
    period: str | None, start: date | None, end: date | None
) -> tuple[datetime | None, datetime | None]:
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


def filter_history(
    items: list[dict[str, Any]],
    *,
    centre: str | None,
    voucher: str | None,
    period: str | None,
    start: date | None,
    end: date | None,
    basis: str,
) -> list[dict[str, Any]]:
    low, high = _window(period, start, end)
    out = []
    for item in items:
        if centre is not None and item["centre"] != centre:
            continue
        if voucher is not None and item["voucher"] != voucher:
            continue
        if low is not None or high is not None:
            when_text = item["at"]
            if basis == "usage" and item["kind"] in ("claim", "capture"):
                when_text = item["usage_start"]
            when = parse_time(when_text)
            if (low is not None and when < low) or (high is not None and when >= high):
                continue
        out.append(item)
    return out


# --- routes ----------------------------------------------------------------------------------

Grantee = Annotated[Principal, Depends(require("grantee"))]
Reader = Annotated[Principal, Depends(require(*READ_ROLES))]
UsccPath = Annotated[
    str,
    Path(description="统一社会信用代码 (18 characters)", pattern=USCC_PATTERN),
]
VoucherPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")]
CentreQuery = Annotated[
    str | None,
    Query(description="only this centre's claims", pattern=r"^[a-z0-9][a-z0-9\-]{0,31}$"),
]
VoucherQuery = Annotated[
    str | None,
    Query(description="only this voucher", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"),
]
PeriodQuery = Annotated[
    str | None,
    Query(
        description="a month 2023-09, a quarter 2023-Q3 or a year 2023 (Asia/Shanghai)",
        pattern=r"^\d{4}(-(0[1-9]|1[0-2])|-Q[1-4])?$",
    ),
]
FromQuery = Annotated[
    date | None, Query(alias="from", description="first day (Asia/Shanghai), YYYY-MM-DD")
]
ToQuery = Annotated[date | None, Query(description="last day, inclusive, YYYY-MM-DD")]
BasisQuery = Annotated[
    Literal["recorded", "usage"],
    Query(description="filter claims by when they were recorded (default) or by usage start"),
]
AfterQuery = Annotated[int, Query(ge=-1, le=2**62, description="only items after this index")]
LimitQuery = Annotated[int, Query(ge=1, le=10000)]


def _own(principal: Principal) -> str:
    if not principal.entity:
        raise Denied("this grantee token names no entity", reason="NOT_YOUR_ENTITY")
    return principal.entity


def _vouchers_answer(request: Request, uscc: str) -> dict[str, Any]:
    with reading(request) as (state, now):
        return entity_vouchers(state, uscc, now)


def _voucher_answer(request: Request, uscc: str, voucher_id: str) -> dict[str, Any]:
    with reading(request) as (state, now):
        found = vouchers.book(state).vouchers.get(voucher_id)
        if found is None or found.holder != uscc:
            raise NotFound(
                f"entity {uscc} holds no voucher {voucher_id!r}",
                reason="UNKNOWN_VOUCHER",
                details={"voucher": voucher_id},
            )
        out = voucher_out(state, found, now)
        held = [found]
        last = _last_claim(state, held)
        out["cap_list"] = entity_caps(state, held, now, last["cap"] if last else None)
        out["claim_list"] = [
            i for i in entity_history(request, state, uscc) if i["voucher"] == voucher_id
        ]
        out["size"] = state.size
        return out


def _history_answer(
    request: Request,
    uscc: str,
    *,
    centre: str | None,
    voucher: str | None,
    period: str | None,
    start: date | None,
    end: date | None,
    basis: str,
    after: int,
    limit: int,
) -> dict[str, Any]:
    with reading(request) as (state, _now):
        items = filter_history(
            entity_history(request, state, uscc),
            centre=centre,
            voucher=voucher,
            period=period,
            start=start,
            end=end,
            basis=basis,
        )
        size = state.size
    items = [i for i in items if i["index"] > after]
    page, more = items[:limit], len(items) > limit
    return {
        "size": size,
        "uscc": uscc,
        "items": page,
        "totals": {
            "items": len(page),
            "cost_fen": sum(i["cost_fen"] for i in page),
            "subsidy_fen": sum(i["subsidy_fen"] for i in page),
        },
        "next_after": page[-1]["index"] if more and page else None,
    }


KIND_TEXT = {
    "claim": "补贴",
    "capture": "补贴(预授权)",
    "claim.reverse": "冲正",
    "clawback": "追回",
    "grant.pay": "一次性奖补",
}


HISTORY_COLUMNS = (
    exports.Column("日志索引", "index", "int", 10),
    exports.Column("时间", lambda r: _beijing(r["at"]), width=20),
    exports.Column("类型", lambda r: KIND_TEXT.get(r["kind"], r["kind"]), width=10),
    exports.Column("计算中心", "centre", width=10),
    exports.Column("凭证编号", "voucher", width=16),
    exports.Column("项目", "programme", width=16),
    exports.Column("作业编号", lambda r: r["record_id"] or r["grant"], width=18),
    exports.Column("算力费用(元)", "cost_fen", "yuan"),
    exports.Column("补贴金额(元)", "subsidy_fen", "yuan"),
    exports.Column("约束上限", "binding_cap", width=14),
    exports.Column("结算单", "statement", width=20),
    exports.Column("包含证明", "proof", width=36),
)


def _beijing(text: str | None) -> str:
    if not text:
        return ""
    moment = parse_time(text)
    return str(moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"))


def history_table(answer: dict[str, Any]) -> exports.Table:
    return exports.Table(
        title="使用与补贴记录",
        columns=HISTORY_COLUMNS,
        rows=answer["items"],
        total={
            "cost_fen": answer["totals"]["cost_fen"],
            "subsidy_fen": answer["totals"]["subsidy_fen"],
        },
    )


def download(content: bytes, media_type: str, filename: str) -> Response:
    return Response(
        content,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "CSV"}
}
XLSX_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {exports.XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        "description": "XLSX workbook",
    }
}


class VoucherDetail(VoucherOut):
    size: int
    cap_list: list[CapOut] = Field(description="every cap of this voucher, by name")
    claim_list: list[HistoryItem] = Field(description="its claims and their corrections")


HISTORY_ERRORS = problem_responses(400, 401, 403)


def _history_file(request: Request, uscc: str, fmt: str, **filters: Any) -> Response:
    answer = _history_answer(request, uscc, **filters)
    table = history_table(answer)
    if fmt == "csv":
        return download(exports.to_csv(table), exports.CSV_MEDIA_TYPE, f"history-{uscc}.csv")
    return download(exports.to_xlsx([table]), exports.XLSX_MEDIA_TYPE, f"history-{uscc}.xlsx")


# /v1/me: the grantee's own entity ------------------------------------------------------------


@router.get("/v1/me/vouchers", response_model=EntityVouchers)
def my_vouchers(request: Request, principal: Grantee) -> dict[str, Any]:
    """My vouchers, balances, every remaining cap by name, and the cap that bound my last
    claim."""
    return _vouchers_answer(request, _own(principal))


@router.get("/v1/me/vouchers/{voucher}", response_model=VoucherDetail)
def my_voucher(request: Request, principal: Grantee, voucher: VoucherPath) -> dict[str, Any]:
    """One of my vouchers: its balance, its caps and its claims."""
    return _voucher_answer(request, _own(principal), voucher)


@router.get("/v1/me/history", response_model=History, responses=HISTORY_ERRORS)
def my_history(
    request: Request,
    principal: Grantee,
    centre: CentreQuery = None,
    voucher: VoucherQuery = None,
    period: PeriodQuery = None,
    start: FromQuery = None,
    to: ToQuery = None,
    basis: BasisQuery = "recorded",
    after: AfterQuery = -1,
    limit: LimitQuery = 1000,
) -> dict[str, Any]:
    """My usage and subsidy history, each item with its log index and inclusion proof."""
    return _history_answer(
        request, _own(principal), centre=centre, voucher=voucher, period=period,
        start=start, end=to, basis=basis, after=after, limit=limit,
    )  # fmt: skip


@router.get("/v1/me/history.csv", response_class=Response, responses=CSV_RESPONSE)
def my_history_csv(
    request: Request,
    principal: Grantee,
    centre: CentreQuery = None,
    voucher: VoucherQuery = None,
    period: PeriodQuery = None,
    start: FromQuery = None,
    to: ToQuery = None,
    basis: BasisQuery = "recorded",
) -> Response:
    """My history as CSV (Chinese headings, 元 with two decimals)."""
    return _history_file(
        request, _own(principal), "csv", centre=centre, voucher=voucher, period=period,
        start=start, end=to, basis=basis, after=-1, limit=10**9,
    )  # fmt: skip


@router.get("/v1/me/history.xlsx", response_class=Response, responses=XLSX_RESPONSE)
def my_history_xlsx(
    request: Request,
    principal: Grantee,
    centre: CentreQuery = None,
    voucher: VoucherQuery = None,
    period: PeriodQuery = None,
    start: FromQuery = None,
    to: ToQuery = None,
    basis: BasisQuery = "recorded",
) -> Response:
    """My history as an XLSX workbook."""
    return _history_file(
        request, _own(principal), "xlsx", centre=centre, voucher=voucher, period=period,
        start=start, end=to, basis=basis, after=-1, limit=10**9,
    )  # fmt: skip


# /v1/entities/{uscc}: auditors and the bureau (and a grantee for its own) --------------------


def _entity_of(principal: Principal, uscc: str) -> str:
    check_entity(principal, uscc)
    return validate_uscc(uscc)  # a wrong check character is a 400, not an empty answer


@router.get("/v1/entities/{uscc}/vouchers", response_model=EntityVouchers)
def entity_vouchers_route(request: Request, principal: Reader, uscc: UsccPath) -> dict[str, Any]:
    """An entity's vouchers, balances and caps (auditor, admin; a grantee: its own)."""
    return _vouchers_answer(request, _entity_of(principal, uscc))


@router.get("/v1/entities/{uscc}/vouchers/{voucher}", response_model=VoucherDetail)
def entity_voucher_route(
    request: Request, principal: Reader, uscc: UsccPath, voucher: VoucherPath
) -> dict[str, Any]:
    """One voucher of an entity."""
    return _voucher_answer(request, _entity_of(principal, uscc), voucher)


@router.get("/v1/entities/{uscc}/history", response_model=History, responses=HISTORY_ERRORS)
def entity_history_route(
    request: Request,
    principal: Reader,
    uscc: UsccPath,
    centre: CentreQuery = None,
    voucher: VoucherQuery = None,
    period: PeriodQuery = None,
    start: FromQuery = None,
    to: ToQuery = None,
    basis: BasisQuery = "recorded",
    after: AfterQuery = -1,
    limit: LimitQuery = 1000,
) -> dict[str, Any]:
    """An entity's usage and subsidy history."""
    return _history_answer(
        request, _entity_of(principal, uscc), centre=centre, voucher=voucher, period=period,
        start=start, end=to, basis=basis, after=after, limit=limit,
    )  # fmt: skip


@router.get("/v1/entities/{uscc}/history.csv", response_class=Response, responses=CSV_RESPONSE)
def entity_history_csv(
    request: Request,
    principal: Reader,
    uscc: UsccPath,
    centre: CentreQuery = None,
    voucher: VoucherQuery = None,
    period: PeriodQuery = None,
    start: FromQuery = None,
    to: ToQuery = None,
    basis: BasisQuery = "recorded",
) -> Response:
    """An entity's history as CSV."""
    return _history_file(
        request, _entity_of(principal, uscc), "csv", centre=centre, voucher=voucher,
        period=period, start=start, end=to, basis=basis, after=-1, limit=10**9,
    )  # fmt: skip


@router.get("/v1/entities/{uscc}/history.xlsx", response_class=Response, responses=XLSX_RESPONSE)
def entity_history_xlsx(
    request: Request,
    principal: Reader,
    uscc: UsccPath,
    centre: CentreQuery = None,
    voucher: VoucherQuery = None,
    period: PeriodQuery = None,
    start: FromQuery = None,
    to: ToQuery = None,
    basis: BasisQuery = "recorded",
) -> Response:
    """An entity's history as an XLSX workbook."""
    return _history_file(
        request, _entity_of(principal, uscc), "xlsx", centre=centre, voucher=voucher,
        period=period, start=start, end=to, basis=basis, after=-1, limit=10**9,
    )  # fmt: skip
