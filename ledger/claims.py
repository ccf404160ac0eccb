"""Centres, rate cards, and redemption: claim, hold, capture, void (issue 4's domain).

Issuer entries:

* ``centre.register`` ``{centre, name, kind}`` — a compute centre the ledger deals with.
* ``ratecard.publish`` ``{centre, version, effective_from, prices: {resource: {price_fen,
  per_units}}}`` — versions 1, 2, … per centre, each in force from ``effective_from`` (RFC
  3339) until the next; usage is priced by the card in force at its *start*:
  ``cost = floor(quantity × price_fen / per_units)``.

Centre entries (signed by a key with role ``centre``; ``body.centre`` must be that key's
centre, else ``Denied(CENTRE_MISMATCH)``; canonical forms in ``docs/claims.md``):

* ``claim`` ``{centre, record_id, voucher, resource, quantity, start, end, cost_fen}``
* ``hold`` ``{centre, hold_id, voucher, estimated_cost_fen, expires_at}``
* ``capture`` ``{centre, hold_id, record_id, resource, quantity, start, end, cost_fen}``
* ``void`` ``{centre, hold_id}``

A claim's subsidy is ``min(floor(cost × rate_bp / 10000), every remaining cap)``
(:mod:`ledger.caps`); its result is ``{subsidy_fen, cost_fen, rate_bp, bound_by,
voucher_balance_fen, policy_version, voucher, record_id}``.

Exactly once: (centre, record_id) is subsidised at most once, under any voucher. The
service looks a retry up with :func:`lookup_claim` and answers the first result without
calling the fold; the fold itself refuses any second claim or capture of the same record
(``ALREADY_CLAIMED``, a Conflict whose details say whether the body is identical or which
fields differ). A reversed claim keeps its record id: a record, once claimed, is never
claimed again.

A hold reserves ``min(rate × estimated cost, caps)`` against every cap until it is
captured, voided or expires (``ctx.time >= expires_at``; no entry needed). Capturing
releases the hold and decides the claim afresh, so it can take more than was held only if
the caps allow. A centre sees and touches only its own holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from immutables import Map

from ledger import caps as caps_mod
from ledger import providers, reports, vouchers
from ledger.caps import Decision
from ledger.entry import Entry
from ledger.errors import Conflict, Denied, InvalidInput, NotFound, Refused
from ledger.money import apply_rate
from ledger.policy import CENTRE_KINDS, Price
from ledger.policy_read import read_prices
from ledger.reader import Reader, body_reader
from ledger.seq import Seq
from ledger.state import Context, LedgerState, Result
from ledger.timeutil import format_time, from_micros, local_text, to_micros
from ledger.usage import RESOURCE_UNITS, check_centre_id
from ledger.vouchers import Voucher, cap_lines, check_usable, voucher_of

MAX_HOLD = timedelta(days=31)
_RECORD_ID = re.compile(r"^[A-Za-z0-9_.:+\-/@]{1,128}$")
CLAIM_FIELDS = (
    "centre",
    "record_id",
    "voucher",
    "resource",
    "quantity",
    "start",
    "end",
    "cost_fen",
)
HOLD_FIELDS = ("centre", "hold_id", "voucher", "estimated_cost_fen", "expires_at")
CAPTURE_FIELDS = (
    "centre",
    "hold_id",
    "record_id",
    "resource",
    "quantity",
    "start",
    "end",
    "cost_fen",
)


@dataclass(frozen=True)
class RateCard:
    centre: str
    version: int
    effective_from: datetime
    prices: Mapping[str, Price]
    index: int


@dataclass(frozen=True)
class Centre:
    id: str
    name: str
    kind: str
    index: int
    rate_cards: tuple[RateCard, ...] = ()

    def card_at(self, moment: datetime) -> RateCard | None:
        found = None
        for card in self.rate_cards:
            if card.effective_from <= moment:
                found = card
        return found


class ClaimRecord(NamedTuple):
    """A claim or capture as the fold keeps it: every field of its body and its result,
    and no more. A centre's quarter holds 10^5..10^6 of these, so it is a tuple (compact,
    immutable, pickled at C speed for fold snapshots) with its times in microseconds."""

    centre: str
    record_id: str
    voucher: str
    index: int  # type: ignore[assignment]  # the log index (shadows tuple.index, unused here)
    at_us: int  # the entry's effective time: when the ledger recorded it
    kind: str  # "claim" or "capture"
    resource: str
    quantity: int
    start_us: int
    end_us: int
    cost_fen: int
    subsidy_fen: int
    rate_bp: int
    bound_by: str
    balance_fen: int  # the voucher's balance right after this claim
    policy_version: str
    hold_id: str | None = None
    clawed_back_fen: int = 0
    reversed_index: int | None = None
    corrected_index: int | None = None  # the last reversal or clawback of it

    @property
    def at(self) -> datetime:
        return from_micros(self.at_us)

    @property
    def start(self) -> datetime:
        return from_micros(self.start_us)

    @property
    def end(self) -> datetime:
        return from_micros(self.end_us)

    @property
    def charge_id(self) -> str:
        return f"claim:{self.centre}:{self.record_id}"

    @property
    def body(self) -> dict[str, Any]:
        """The entry's body, exactly (times have one spelling, so it is rebuilt whole)."""
        head = {"centre": self.centre}
        if self.kind == "capture":
            head["hold_id"] = str(self.hold_id)
        else:
            head["voucher"] = self.voucher
        return {
            **head,
            "record_id": self.record_id,
            "resource": self.resource,
            "quantity": self.quantity,
            "start": format_time(self.start),
            "end": format_time(self.end),
            "cost_fen": self.cost_fen,
        }

    @property
    def result(self) -> dict[str, Any]:
        """What the fold answered for the claim when it was recorded."""
        return {
            "subsidy_fen": self.subsidy_fen,
            "cost_fen": self.cost_fen,
            "rate_bp": self.rate_bp,
            "bound_by": self.bound_by,
            "voucher_balance_fen": self.balance_fen,
            "policy_version": self.policy_version,
            "voucher": self.voucher,
            "record_id": self.record_id,
        }

    @property
    def net_fen(self) -> int:
        return 0 if self.reversed_index is not None else self.subsidy_fen - self.clawed_back_fen


@dataclass(frozen=True)
class Hold:
    centre: str
    hold_id: str
    voucher: str
    index: int
    at: datetime
    amount_fen: int
    estimated_cost_fen: int
    expires_at: datetime
    status: str = "open"  # open | captured | voided (expired is open past expires_at)
    closed_index: int | None = None
    record_id: str | None = None

    @property
    def charge_id(self) -> str:
        return f"hold:{self.centre}:{self.hold_id}"

    def status_at(self, now: datetime) -> str:
        return "expired" if self.status == "open" and now >= self.expires_at else self.status


@dataclass
class ClaimBook:
    centres: Map[str, Centre] = field(default_factory=Map)
    claims: Map[tuple[str, str], ClaimRecord] = field(default_factory=Map)
    holds: Map[tuple[str, str], Hold] = field(default_factory=Map)
    by_voucher: Map[str, Seq[tuple[str, str]]] = field(default_factory=Map)
    by_centre: Map[str, Seq[str]] = field(default_factory=Map)  # record ids, in log order
    holds_by_voucher: Map[str, Seq[tuple[str, str]]] = field(default_factory=Map)

    def put_centre(self, centre: Centre) -> None:
        self.centres = self.centres.set(centre.id, centre)

    def put_claim(self, record: ClaimRecord) -> None:
        """Record a claim, or replace it with its corrected self (same centre and record)."""
        key = (record.centre, record.record_id)
        if key not in self.claims:
            listed = self.by_voucher.get(record.voucher, Seq())
            self.by_voucher = self.by_voucher.set(record.voucher, listed.append(key))
            of_centre = self.by_centre.get(record.centre, Seq())
            self.by_centre = self.by_centre.set(record.centre, of_centre.append(record.record_id))
        self.claims = self.claims.set(key, record)

    def put_hold(self, hold: Hold) -> None:
        key = (hold.centre, hold.hold_id)
        if key not in self.holds:
            listed = self.holds_by_voucher.get(hold.voucher, Seq())
            self.holds_by_voucher = self.holds_by_voucher.set(hold.voucher, listed.append(key))
        self.holds = self.holds.set(key, hold)


def book(state: LedgerState) -> ClaimBook:
    part: ClaimBook = state.part("claims", ClaimBook)
    return part


def lookup_claim(
    state: LedgerState, centre: str, record_id: str
) -> tuple[int, dict[str, Any], dict[str, Any]] | None:
    """(log index, body, result) of the claim or capture of (centre, record_id), if any."""
    found = book(state).claims.get((centre, record_id))
    return None if found is None else (found.index, dict(found.body), dict(found.result))


def claim_of(state: LedgerState, centre: str, record_id: str) -> ClaimRecord:
    found = book(state).claims.get((centre, record_id))
    if found is None:
        raise NotFound(f"centre {centre} has no claim {record_id!r}", reason="UNKNOWN_CLAIM")
    return found


def claim_at(state: LedgerState, centre: str, index: int) -> ClaimRecord | None:
    """The centre's claim or capture recorded at log ``index``, if any (a binary search of
    its claims, which are listed in log order)."""
    found = book(state)
    listed = found.by_centre.get(centre, ())
    low, high = 0, len(listed)
    while low < high:
        middle = (low + high) // 2
        record = found.claims[(centre, listed[middle])]
        if record.index < index:
            low = middle + 1
        elif record.index > index:
            high = middle
        else:
            return record
    return None


def centre_of(state: LedgerState, centre_id: str) -> Centre:
    found = state.read("claims", ClaimBook).centres.get(centre_id)
    if found is None:
        raise NotFound(f"centre {centre_id!r} is not registered", reason="UNKNOWN_CENTRE")
    return found


# --- centres and rate cards --------------------------------------------------------------


def apply_centre_register(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    r = body_reader(entry).obj(["centre", "name", "kind"])
    centre_id = r.text("centre", max_len=32)
    check_centre_id(centre_id)
    name, kind = r.text("name", max_len=200), r.choice("kind", CENTRE_KINDS)
    if centre_id in book(state).centres:
        raise Conflict(f"centre {centre_id} is already registered", reason="CENTRE_EXISTS")
    book(state).put_centre(Centre(centre_id, name, kind, ctx.index))
    return {"centre": centre_id}


def centre_body(centre: str, name: str, kind: str) -> dict[str, Any]:
    """Body of ``centre.register``."""
    check_centre_id(centre)
    body = {"centre": centre, "name": name, "kind": kind}
    Reader(body, "body").obj(["centre", "name", "kind"]).choice("kind", CENTRE_KINDS)
    return body


def apply_ratecard(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    r = body_reader(entry).obj(["centre", "version", "effective_from", "prices"], ["note"])
    centre = centre_of(state, r.text("centre", max_len=32))
    version = r.integer("version", minimum=1)
    effective = r.time("effective_from")
    prices = read_prices(r)
    last = centre.rate_cards[-1] if centre.rate_cards else None
    if version != (last.version + 1 if last else 1):
        raise Conflict(
            f"centre {centre.id}'s next rate card is version {last.version + 1 if last else 1}, "
            f"not {version}",
            reason="RATECARD_VERSION",
        )
    if last is not None and effective <= last.effective_from:
        raise InvalidInput(
            f"rate card {version} must take effect after version {last.version} "
            f"({format_time(last.effective_from)})",
            reason="RATECARD_VERSION",
        )
    card = RateCard(centre.id, version, effective, prices, ctx.index)
    book(state).put_centre(replace(centre, rate_cards=(*centre.rate_cards, card)))
    return {"centre": centre.id, "version": version}


def ratecard_body(
    centre: str, version: int, effective_from: datetime, prices: Mapping[str, Price], note: str = ""
) -> dict[str, Any]:
    """Body of ``ratecard.publish``."""
    body: dict[str, Any] = {
        "centre": centre,
        "version": version,
        "effective_from": format_time(effective_from),
        "prices": {
            k: {"price_fen": p.price_fen, "per_units": p.per_units} for k, p in prices.items()
        },
    }
    if note:
        body["note"] = note
    r = Reader(body, "body").obj(["centre", "version", "effective_from", "prices"], ["note"])
    r.integer("version", minimum=1)
    read_prices(r)
    return body


# --- the claim path ----------------------------------------------------------------------


def _centre_matches(r: Reader, ctx: Context) -> str:
    centre = r.child("centre").value
    signer_centre = ctx.centre()
    if not isinstance(centre, str) or centre != signer_centre:
        raise Denied(
            f"the entry is signed for centre {signer_centre!r} but names centre {centre!r}",
            reason="CENTRE_MISMATCH",
            details={"signed_by": signer_centre, "body": centre},
        )
    return centre


@dataclass(frozen=True)
class Usage:
    record_id: str
    resource: str
    quantity: int
    start: datetime
    end: datetime
    cost_fen: int


def _read_usage(r: Reader) -> Usage:
    record_id = r.text("record_id", pattern=_RECORD_ID, reason="MALFORMED_RECORD")
    resource = r.child("resource").value
    if not isinstance(resource, str) or resource not in RESOURCE_UNITS:
        raise InvalidInput(
            f"{r.path}.resource: unknown resource {resource!r}; known: {sorted(RESOURCE_UNITS)}",
            reason="UNKNOWN_RESOURCE",
            details={"resource": resource},
        )
    quantity = r.integer("quantity", minimum=1, reason="MALFORMED_QUANTITY")
    start = r.time("start", reason="MALFORMED_TIME")
    end = r.time("end", reason="MALFORMED_TIME")
    if end < start:
        raise InvalidInput(
            f"{r.path}.end {format_time(end)} is before start {format_time(start)}",
            reason="MALFORMED_TIME",
        )
    return Usage(
        record_id, resource, quantity, start, end, r.fen("cost_fen", reason="MALFORMED_COST")
    )


def _duplicate(state: LedgerState, centre: str, record_id: str, body: Mapping[str, Any]) -> None:
    found = book(state).claims.get((centre, record_id))
    if found is None:
        return
    if found.body == dict(body):
        raise Conflict(
            f"record {record_id} of {centre} was already claimed with this same body at entry "
            f"{found.index}; a retry gets the first answer from the service",
            reason="ALREADY_CLAIMED",
            details={"index": found.index, "identical": "true"},
        )
    differs = sorted(k for k in set(found.body) | set(body) if found.body.get(k) != body.get(k))
    raise Conflict(
        f"record {record_id} of {centre} was already claimed at entry {found.index} with a "
        f"different body (differs in {', '.join(differs)})",
        reason="ALREADY_CLAIMED",
        details={
            "index": found.index,
            "identical": "false",
            "differs": ",".join(differs),
            **{f"first.{k}": found.body.get(k) for k in differs},
            **{f"this.{k}": body.get(k) for k in differs},
        },
    )


def _check_voucher(state: LedgerState, voucher: Voucher, centre: str, now: datetime) -> None:
    check_usable(state, voucher, now)
    if not providers.accepts(voucher.centres, centre):
        raise Refused(
            f"voucher {voucher.id} of round {voucher.round} is not accepted at centre {centre} "
            f"(the round's programme accepts {providers.describe(voucher.centres)})",
            reason="CENTRE_NOT_ACCEPTED",
            details={"centre": centre, "accepted": ",".join(voucher.centres)},
        )


def _usage_window(voucher: Voucher, start: datetime, end: datetime) -> None:
    if start < voucher.usage_start or end > voucher.usage_end:
        raise Refused(
            f"usage {local_text(start)} to {local_text(end)} is outside voucher {voucher.id}'s "
            f"usage window {local_text(voucher.usage_start)} to {local_text(voucher.usage_end)} "
            "(Asia/Shanghai)",
            reason="USAGE_OUTSIDE_WINDOW",
            details={
                "window_start": format_time(voucher.usage_start),
                "window_end": format_time(voucher.usage_end),
            },
        )


def _not_reimbursed(state: LedgerState, voucher: Voucher, centre: str, usage: Usage) -> None:
    """Usage the holder already claimed back post hoc (model B) is not subsidised again."""
    from ledger.reimbursement import reimbursed_at  # it reads this module's claims too

    found = reimbursed_at(state, voucher.holder, centre, usage.start, usage.end)
    if found is not None:
        raise Refused(
            f"usage {local_text(usage.start)} to {local_text(usage.end)} at {centre} is covered "
            f"by reimbursement claim {found.id} of {voucher.holder} (entry {found.index}, "
            f"{found.first_day} to {found.last_day})",
            reason="ALREADY_REIMBURSED",
            details={"claim": found.id, "index": found.index},
        )


def _price(state: LedgerState, centre: str, usage: Usage) -> tuple[int, int]:
    """(cost by the rate card in force at the usage start, that card's version)."""
    card = centre_of(state, centre).card_at(usage.start)
    if card is None:
        raise Refused(
            f"centre {centre} has no rate card in force at {format_time(usage.start)}",
            reason="NO_RATE_CARD",
        )
    price = card.prices.get(usage.resource)
    if price is None:
        raise InvalidInput(
            f"rate card {card.version} of {centre} has no price for {usage.resource!r} "
            f"(priced: {sorted(card.prices)})",
            reason="UNKNOWN_RESOURCE",
            details={"resource": usage.resource, "rate_card_version": card.version},
        )
    cost = price.cost(usage.quantity)
    if cost != usage.cost_fen:
        raise InvalidInput(
            f"claimed cost {usage.cost_fen} fen differs from the rate card's {cost} fen "
            f"({usage.quantity} × {price.price_fen} fen / {price.per_units} {usage.resource} "
            f"units, rate card {card.version} of {centre})",
            reason="COST_MISMATCH",
            details={
                "claimed_fen": usage.cost_fen,
                "rate_card_fen": cost,
                "rate_card_version": card.version,
            },
        )
    return cost, card.version


@dataclass(frozen=True)
class _Plan:
    voucher: Voucher
    usage: Usage
    decision: Decision
    lines: tuple[caps_mod.CapLine, ...]
    policy_version: str


def _plan_claim(
    state: LedgerState,
    ctx: Context,
    centre: str,
    voucher: Voucher,
    usage: Usage,
    releasing: tuple[str, ...] = (),
) -> _Plan:
    _check_voucher(state, voucher, centre, ctx.time)
    _usage_window(voucher, usage.start, usage.end)
    _not_reimbursed(state, voucher, centre, usage)
    cost, _ = _price(state, centre, usage)
    lines, policy = cap_lines(state, voucher, usage.start, ctx.time)
    wanted = apply_rate(cost, voucher.rate_bp)
    decision = caps_mod.book(state).decide(wanted, lines, ctx.time, releasing)
    return _Plan(voucher, usage, decision, lines, policy.version)


def _record_claim(
    state: LedgerState, ctx: Context, entry: Entry, centre: str, plan: _Plan, hold_id: str | None
) -> dict[str, Any]:
    """Mutate: charge the caps and record the claim. Call only after every check."""
    caps = caps_mod.book(state)
    usage = plan.usage
    caps.charge(f"claim:{centre}:{usage.record_id}", "claim", plan.lines, plan.decision.amount)
    record = ClaimRecord(
        centre=centre,
        record_id=usage.record_id,
        voucher=plan.voucher.id,
        index=ctx.index,
        at_us=to_micros(ctx.time),
        kind=entry.kind,
        resource=usage.resource,
        quantity=usage.quantity,
        start_us=to_micros(usage.start),
        end_us=to_micros(usage.end),
        cost_fen=usage.cost_fen,
        subsidy_fen=plan.decision.amount,
        rate_bp=plan.voucher.rate_bp,
        bound_by=plan.decision.bound_by,
        balance_fen=caps.remaining(plan.lines[0], caps.adjustments(ctx.time)) or 0,
        policy_version=plan.policy_version,
        hold_id=hold_id,
    )
    book(state).put_claim(record)
    reports.count_claim(state, record)
    voucher_book = vouchers.book(state)
    voucher_book.last_bound_by = voucher_book.last_bound_by.set(
        plan.voucher.id, plan.decision.bound_by
    )
    return record.result


def apply_claim(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    r = body_reader(entry)
    centre = _centre_matches(r, ctx)
    r.obj(CLAIM_FIELDS)
    usage = _read_usage(r)
    voucher_id = r.ident("voucher")
    centre_of(state, centre)
    _duplicate(state, centre, usage.record_id, entry.body)
    voucher = voucher_of(state, voucher_id)
    plan = _plan_claim(state, ctx, centre, voucher, usage)
    # mutate
    caps_mod.book(state).sweep(ctx.time)
    return _record_claim(state, ctx, entry, centre, plan, None)


def claim_body(
    *,
    centre: str,
    record_id: str,
    voucher: str,
    resource: str,
    quantity: int,
    start: datetime,
    end: datetime,
    cost_fen: int,
) -> dict[str, Any]:
    """Body of ``claim`` (times written as UTC RFC 3339 with microseconds)."""
    body = {
        "centre": centre,
        "record_id": record_id,
        "voucher": voucher,
        "resource": resource,
        "quantity": quantity,
        "start": format_time(start),
        "end": format_time(end),
        "cost_fen": cost_fen,
    }
    r = Reader(body, "body").obj(CLAIM_FIELDS)
    _read_usage(r)
    r.ident("voucher")
    check_centre_id(centre)
    return body


# --- holds -------------------------------------------------------------------------------


def _hold_of(state: LedgerState, centre: str, hold_id: str, now: datetime) -> Hold:
    hold = book(state).holds.get((centre, hold_id))
    if hold is None:
        raise NotFound(f"centre {centre} has no hold {hold_id!r}", reason="UNKNOWN_HOLD")
    status = hold.status_at(now)
    if status in ("captured", "voided"):
        raise Conflict(
            f"hold {hold_id} is already {status} (entry {hold.closed_index})",
            reason="HOLD_CLOSED",
            details={"status": status},
        )
    if status == "expired":
        raise Refused(
            f"hold {hold_id} expired at {local_text(hold.expires_at)} (Asia/Shanghai)",
            reason="HOLD_EXPIRED",
            details={"expires_at": format_time(hold.expires_at)},
        )
    return hold


def apply_hold(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    r = body_reader(entry)
    centre = _centre_matches(r, ctx)
    r.obj(HOLD_FIELDS)
    hold_id = r.text("hold_id", pattern=_RECORD_ID, reason="MALFORMED_RECORD")
    voucher_id = r.ident("voucher")
    estimate = r.fen("estimated_cost_fen", reason="MALFORMED_COST")
    expires = r.time("expires_at", reason="MALFORMED_TIME")
    if not ctx.time < expires <= ctx.time + MAX_HOLD:
        raise InvalidInput(
            f"hold: expires_at must be after the entry's time and at most {MAX_HOLD.days} days on",
            reason="MALFORMED_TIME",
        )
    centre_of(state, centre)
    holds = book(state).holds
    if (centre, hold_id) in holds:
        raise Conflict(
            f"centre {centre} already has a hold {hold_id} "
            f"(entry {holds[(centre, hold_id)].index})",
            reason="HOLD_EXISTS",
        )
    voucher = voucher_of(state, voucher_id)
    _check_voucher(state, voucher, centre, ctx.time)
    _usage_window(voucher, ctx.time, ctx.time)
    lines, policy = cap_lines(state, voucher, ctx.time, ctx.time)
    caps = caps_mod.book(state)
    decision = caps.decide(apply_rate(estimate, voucher.rate_bp), lines, ctx.time)
    # mutate
    caps.sweep(ctx.time)
    hold = Hold(
        centre, hold_id, voucher.id, ctx.index, ctx.time, decision.amount, estimate, expires
    )
    caps.charge(hold.charge_id, "hold", lines, decision.amount, expires)
    book(state).put_hold(hold)
    return {
        "hold_id": hold_id,
        "voucher": voucher.id,
        "held_fen": decision.amount,
        "bound_by": decision.bound_by,
        "expires_at": format_time(expires),
        "voucher_balance_fen": caps.remaining(lines[0]),
        "policy_version": policy.version,
    }


def hold_body(
    *, centre: str, hold_id: str, voucher: str, estimated_cost_fen: int, expires_at: datetime
) -> dict[str, Any]:
    """Body of ``hold``."""
    body = {
        "centre": centre,
        "hold_id": hold_id,
        "voucher": voucher,
        "estimated_cost_fen": estimated_cost_fen,
        "expires_at": format_time(expires_at),
    }
    r = Reader(body, "body").obj(HOLD_FIELDS)
    r.text("hold_id", pattern=_RECORD_ID)
    r.fen("estimated_cost_fen")
    check_centre_id(centre)
    return body


def apply_capture(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    r = body_reader(entry)
    centre = _centre_matches(r, ctx)
    r.obj(CAPTURE_FIELDS)
    hold_id = r.text("hold_id", pattern=_RECORD_ID, reason="MALFORMED_RECORD")
    usage = _read_usage(r)
    hold = _hold_of(state, centre, hold_id, ctx.time)
    _duplicate(state, centre, usage.record_id, entry.body)
    voucher = voucher_of(state, hold.voucher)
    plan = _plan_claim(state, ctx, centre, voucher, usage, releasing=(hold.charge_id,))
    # mutate
    caps = caps_mod.book(state)
    caps.sweep(ctx.time)
    caps.release(hold.charge_id)
    captured = replace(hold, status="captured", closed_index=ctx.index, record_id=usage.record_id)
    book(state).put_hold(captured)
    result = _record_claim(state, ctx, entry, centre, plan, hold_id)
    return {**result, "hold_id": hold_id, "held_fen": hold.amount_fen}


def capture_body(
    *,
    centre: str,
    hold_id: str,
    record_id: str,
    resource: str,
    quantity: int,
    start: datetime,
    end: datetime,
    cost_fen: int,
) -> dict[str, Any]:
    """Body of ``capture``."""
    body = {
        "centre": centre,
        "hold_id": hold_id,
        "record_id": record_id,
        "resource": resource,
        "quantity": quantity,
        "start": format_time(start),
        "end": format_time(end),
        "cost_fen": cost_fen,
    }
    r = Reader(body, "body").obj(CAPTURE_FIELDS)
    r.text("hold_id", pattern=_RECORD_ID)
    _read_usage(r)
    check_centre_id(centre)
    return body


def apply_void(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    r = body_reader(entry)
    centre = _centre_matches(r, ctx)
    r.obj(["centre", "hold_id"])
    hold = _hold_of(
        state, centre, r.text("hold_id", pattern=_RECORD_ID, reason="MALFORMED_RECORD"), ctx.time
    )
    # mutate
    caps = caps_mod.book(state)
    caps.sweep(ctx.time)
    caps.release(hold.charge_id)
    book(state).put_hold(replace(hold, status="voided", closed_index=ctx.index))
    return {"hold_id": hold.hold_id, "released_fen": hold.amount_fen}


def void_body(*, centre: str, hold_id: str) -> dict[str, Any]:
    """Body of ``void``."""
    check_centre_id(centre)
    body = {"centre": centre, "hold_id": hold_id}
    Reader(body, "body").text("hold_id", pattern=_RECORD_ID)
    return body


def close_holds_of(state: LedgerState, voucher_id: str, ctx: Context, status: str) -> list[str]:
    """Release every open hold on a voucher (it is revoked or expired). Mutates."""
    caps = caps_mod.book(state)
    caps.sweep(ctx.time)
    closed = []
    claims = book(state)
    for key in claims.holds_by_voucher.get(voucher_id, []):
        hold = claims.holds[key]
        if hold.status == "open" and hold.charge_id in caps.charges:
            caps.release(hold.charge_id)
            claims.put_hold(replace(hold, status=status, closed_index=ctx.index))
            closed.append(hold.hold_id)
    return closed


# --- read side ---------------------------------------------------------------------------


def claim_view(state: LedgerState, centre: str, record_id: str) -> dict[str, Any]:
    c = claim_of(state, centre, record_id)
    return {
        "centre": c.centre,
        "record_id": c.record_id,
        "voucher": c.voucher,
        "index": c.index,
        "at": format_time(c.at),
        "kind": c.kind,
        "body": dict(c.body),
        "result": dict(c.result),
        "subsidy_fen": c.subsidy_fen,
        "clawed_back_fen": c.clawed_back_fen,
        "reversed_index": c.reversed_index,
        "net_fen": c.net_fen,
        "hold_id": c.hold_id,
    }


def hold_view(
    state: LedgerState, centre: str, hold_id: str, at: datetime | None = None
) -> dict[str, Any]:
    """A centre's hold; NotFound(UNKNOWN_HOLD) for another centre's (it sees only its own)."""
    hold = book(state).holds.get((centre, hold_id))
    if hold is None:
        raise NotFound(f"centre {centre} has no hold {hold_id!r}", reason="UNKNOWN_HOLD")
    now = at or state.time or hold.at
    return {
        "centre": hold.centre,
        "hold_id": hold.hold_id,
        "voucher": hold.voucher,
        "index": hold.index,
        "held_fen": hold.amount_fen,
        "estimated_cost_fen": hold.estimated_cost_fen,
        "expires_at": format_time(hold.expires_at),
        "status": hold.status_at(now),
        "closed_index": hold.closed_index,
        "record_id": hold.record_id,
    }


def claims_of_voucher(state: LedgerState, voucher_id: str) -> list[dict[str, Any]]:
    """Every claim and capture on a voucher, in log order."""
    return [claim_view(state, c, r) for c, r in book(state).by_voucher.get(voucher_id, [])]


def claims_of_centre(state: LedgerState, centre: str) -> list[dict[str, Any]]:
    """A centre's own claims, in log order."""
    return [claim_view(state, centre, r) for r in book(state).by_centre.get(centre, ())]


def rate_card_view(
    state: LedgerState, centre: str, at: datetime | None = None
) -> dict[str, Any] | None:
    found = centre_of(state, centre)
    moment = at or state.time
    if moment is not None:
        card = found.card_at(moment)
    else:
        card = found.rate_cards[-1] if found.rate_cards else None
    if card is None:
        return None
    return {
        "centre": card.centre,
        "version": card.version,
        "effective_from": format_time(card.effective_from),
        "prices": {
            k: {"price_fen": p.price_fen, "per_units": p.per_units} for k, p in card.prices.items()
        },
        "index": card.index,
    }
