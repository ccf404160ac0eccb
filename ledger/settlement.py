"""Settlement (结算/兑付): the city reimburses each centre for the subsidies it granted.

A centre grants the subsidy to the holder at redemption (the holder pays the centre only
the rest); the city then pays the centre, per period, on a **statement** recorded in the
log as a ``statement.issue`` entry signed by the **log key** (role ``log``). The statement
is the centre's invoice basis; the fold makes sure that every claim is settled exactly once.

``statement.issue`` body (see ``docs/settlement.md`` for every field)::

    {"statement": "nscc-cd.2023-Q3.1", "centre": "nscc-cd", "period": "2023-Q3",
     "cadence": "quarterly", "period_start": RFC 3339, "period_end": RFC 3339 (exclusive),
     "sequence": 1, "previous": "<the centre's previous statement id>" | null,
     "lines": [{line, type, record_id, claim_index, kind, voucher, round, programme, holder,
                captured_at, cost_fen, subsidy_fen, clawed_back_fen, reversed_index,
                settled_before_fen, amount_fen}, ...],
     "totals": {lines, claims, adjustments, cost_fen, amount_fen,
                by_programme: [...], by_voucher: [...]}}

What a statement for centre C and period P holds, decided by the fold alone:

* **claim lines**: every claim or capture of C, recorded (its entry's effective time)
  inside P (Asia/Shanghai calendar month, quarter or year, per the settlement cadence of
  the voucher's round in force), that no earlier statement settled, in log order. The line
  pays the claim's *net* subsidy at that moment (subsidy less clawbacks; 0 if reversed),
  so a claim corrected before it is settled is simply settled at what remains.
* **adjustment lines**: for every claim of C settled by an earlier statement whose net
  subsidy has since gone down (a ``clawback`` or ``claim.reverse`` after settlement), a
  line of ``net - settled so far`` (negative): the correction goes into the centre's
  **next** statement, whatever its period. Its ``cost_fen`` is 0 (the cost was stated on
  the line that first settled the claim). A claim line always states the claim's cost,
  even for a claim reversed before it was settled (its line pays 0).
* A claim recorded after a statement of P falls into the next statement: a second
  statement of the same period (``sequence`` 2, 3, …) holds only claims newer than the
  first, and a claim recorded after P ends falls into the statement of its own period.

The fold recomputes the statement from its own state and refuses any body that differs:
a claim already settled (``ALREADY_SETTLED``), a claim outside the period or of another
centre (``NOT_IN_PERIOD``), an unknown claim (``UNKNOWN_CLAIM``), a claim or adjustment
left out (``STATEMENT_INCOMPLETE``), any other difference — amounts, totals, order, the
sequence or the chain (``STATEMENT_MISMATCH``). A period that has not begun is refused
(``PERIOD_NOT_STARTED``), as is a statement with nothing in it (``NOTHING_TO_SETTLE``)
and a period written for another cadence (``PERIOD_CADENCE``). The service builds the body
with :func:`statement_body` inside its write transaction, so what it builds is what the
fold expects.

Amounts are integer fen; a statement's total can be negative (only adjustments: the
centre owes the city).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NoReturn

from immutables import Map
from pyrsistent import PVector, pvector

from ledger.claims import ClaimRecord, centre_of
from ledger.claims import book as claim_book
from ledger.entry import Entry
from ledger.errors import Conflict, InvalidInput, NotFound, Refused
from ledger.policy import current_policy
from ledger.reader import Reader, body_reader
from ledger.state import Context, LedgerState, Result
from ledger.timeutil import SHANGHAI, format_time, local_text, shanghai_start
from ledger.vouchers import voucher_of

CADENCES = ("monthly", "quarterly", "yearly")
FIRST_YEAR, LAST_YEAR = 2000, 2099  # the ledger's years (ledger.timeutil); others are malformed
STATEMENT_FIELDS = (
    "statement",
    "centre",
    "period",
    "cadence",
    "period_start",
    "period_end",
    "sequence",
    "previous",
    "lines",
    "totals",
)
LINE_FIELDS = (
    "line",
    "type",
    "record_id",
    "claim_index",
    "kind",
    "voucher",
    "round",
    "programme",
    "holder",
    "captured_at",
    "cost_fen",
    "subsidy_fen",
    "clawed_back_fen",
    "reversed_index",
    "settled_before_fen",
    "amount_fen",
)
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
_YEAR = re.compile(r"^(\d{4})$")


# --- periods -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """A settlement period: an Asia/Shanghai calendar month, quarter or year.

    ``start`` and ``end`` are UTC; ``end`` is exclusive (00:00 of the next period).
    """

    text: str  # "2023-09" | "2023-Q3" | "2023"
    cadence: str  # monthly | quarterly | yearly
    start: datetime
    end: datetime

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def _month_start(year: int, month: int) -> datetime:
    while month > 12:
        year, month = year + 1, month - 12
    return shanghai_start(date(year, month, 1))


def parse_period(text: str) -> Period:
    """``"2023-09"`` (monthly), ``"2023-Q3"`` (quarterly) or ``"2023"`` (yearly)."""
    if not isinstance(text, str):
        raise InvalidInput(f"period must be a string, got {text!r}", reason="MALFORMED_PERIOD")
    if text[:4].isdigit() and not FIRST_YEAR <= int(text[:4]) <= LAST_YEAR:
        raise InvalidInput(
            f"period {text!r}: the year must be between {FIRST_YEAR} and {LAST_YEAR}",
            reason="MALFORMED_PERIOD",
            details={"period": text},
        )
    if m := _MONTH.match(text):
        year, month = int(m.group(1)), int(m.group(2))
        return Period(text, "monthly", _month_start(year, month), _month_start(year, month + 1))
    if m := _QUARTER.match(text):
        year, first = int(m.group(1)), 3 * int(m.group(2)) - 2
        return Period(text, "quarterly", _month_start(year, first), _month_start(year, first + 3))
    if m := _YEAR.match(text):
        year = int(m.group(1))
        return Period(text, "yearly", _month_start(year, 1), _month_start(year + 1, 1))
    raise InvalidInput(
        f"period {text!r} is not a month (2023-09), a quarter (2023-Q3) or a year (2023)",
        reason="MALFORMED_PERIOD",
        details={"period": text},
    )


def period_of(moment: datetime, cadence: str) -> Period:
    """The period of ``cadence`` that contains ``moment`` (Asia/Shanghai)."""
    local = moment.astimezone(SHANGHAI)
    if cadence == "monthly":
        return parse_period(f"{local.year:04d}-{local.month:02d}")
    if cadence == "quarterly":
        return parse_period(f"{local.year:04d}-Q{(local.month - 1) // 3 + 1}")
    if cadence == "yearly":
        return parse_period(f"{local.year:04d}")
    raise InvalidInput(f"cadence must be one of {list(CADENCES)}, got {cadence!r}")


def statement_id(centre: str, period: str, sequence: int) -> str:
    return f"{centre}.{period}.{sequence}"


# --- the book ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    id: str
    centre: str
    period: str
    sequence: int
    index: int
    at: datetime
    body: dict[str, Any]
    signed_by: tuple[str, ...]


@dataclass(frozen=True)
class Settled:
    """How much of a claim has been settled, and on which statement lines."""

    amount_fen: int
    lines: tuple[tuple[str, int, int], ...] = ()  # (statement, line, amount)

    @property
    def first(self) -> str:
        return self.lines[0][0]


@dataclass
class SettlementBook:
    statements: Map[str, Statement] = field(default_factory=Map)
    by_centre: Map[str, PVector[str]] = field(default_factory=Map)
    sequences: Map[tuple[str, str], int] = field(default_factory=Map)  # (centre, period)
    settled: Map[tuple[str, str], Settled] = field(default_factory=Map)  # (centre, record)
    settled_by_centre: Map[str, PVector[tuple[str, str]]] = field(default_factory=Map)


def book(state: LedgerState) -> SettlementBook:
    part: SettlementBook = state.part("settlement", SettlementBook)
    return part


def statement_of(state: LedgerState, statement: str) -> Statement:
    found = book(state).statements.get(statement)
    if found is None:
        raise NotFound(
            f"no settlement statement {statement!r}",
            reason="UNKNOWN_STATEMENT",
            details={"statement_id": statement},
        )
    return found


# --- composing a statement ---------------------------------------------------------------


def _cadence(state: LedgerState, round_id: str, cache: dict[str, str]) -> str:
    if round_id not in cache:
        cache[round_id] = current_policy(state, round_id).settlement_cadence
    return cache[round_id]


def _line(record: ClaimRecord, state: LedgerState, **fields: Any) -> dict[str, Any]:
    voucher = voucher_of(state, record.voucher)
    return {
        "line": 0,  # numbered when the lines are put in order
        "type": "claim",
        "record_id": record.record_id,
        "claim_index": record.index,
        "kind": record.kind,
        "voucher": record.voucher,
        "round": voucher.round,
        "programme": voucher.programme,
        "holder": voucher.holder,
        "captured_at": format_time(record.at),
        "cost_fen": record.cost_fen,
        "subsidy_fen": record.subsidy_fen,
        "clawed_back_fen": record.clawed_back_fen,
        "reversed_index": record.reversed_index,
        **fields,
    }


def pending_lines(state: LedgerState, centre: str, period: Period) -> list[dict[str, Any]]:
    """The lines a statement of ``centre`` for ``period`` holds now (numbered from 1)."""
    settlement = book(state)
    cadences: dict[str, str] = {}
    fresh: list[dict[str, Any]] = []
    claims = claim_book(state)
    for record_id in claims.by_centre.get(centre, ()):
        record = claims.claims[(centre, record_id)]
        if (centre, record_id) in settlement.settled or not period.contains(record.at):
            continue
        if _cadence(state, voucher_of(state, record.voucher).round, cadences) != period.cadence:
            continue
        fresh.append(_line(record, state, settled_before_fen=0, amount_fen=record.net_fen))
    adjustments: list[dict[str, Any]] = []
    for key in settlement.settled_by_centre.get(centre, []):
        record = claim_book(state).claims[key]
        done = settlement.settled[key]
        if record.net_fen == done.amount_fen:
            continue
        if _cadence(state, voucher_of(state, record.voucher).round, cadences) != period.cadence:
            continue
        adjustments.append(
            _line(
                record,
                state,
                type="adjustment",
                cost_fen=0,
                settled_before_fen=done.amount_fen,
                amount_fen=record.net_fen - done.amount_fen,
            )
        )
    lines = sorted(fresh, key=lambda x: x["claim_index"]) + sorted(
        adjustments, key=lambda x: x["claim_index"]
    )
    for n, line in enumerate(lines, start=1):
        line["line"] = n
    return lines


def totals_of(lines: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Totals of statement lines: overall, by programme (round/programme) and by voucher."""
    by_programme: dict[tuple[str, str], dict[str, Any]] = {}
    by_voucher: dict[str, dict[str, Any]] = {}
    total = {"lines": 0, "claims": 0, "adjustments": 0, "cost_fen": 0, "amount_fen": 0}
    for line in lines:
        p = by_programme.setdefault(
            (line["round"], line["programme"]),
            {
                "round": line["round"],
                "programme": line["programme"],
                "lines": 0,
                "cost_fen": 0,
                "amount_fen": 0,
            },
        )
        v = by_voucher.setdefault(
            line["voucher"],
            {
                "voucher": line["voucher"],
                "holder": line["holder"],
                "round": line["round"],
                "programme": line["programme"],
                "lines": 0,
                "cost_fen": 0,
                "amount_fen": 0,
            },
        )
        for row in (p, v, total):
            row["lines"] += 1
            row["cost_fen"] += line["cost_fen"]
            row["amount_fen"] += line["amount_fen"]
        total["claims" if line["type"] == "claim" else "adjustments"] += 1
    return {
        **total,
        "by_programme": [by_programme[k] for k in sorted(by_programme)],
        "by_voucher": [by_voucher[k] for k in sorted(by_voucher)],
    }


def _compose(
    state: LedgerState, centre: str, period: Period, moment: datetime | None
) -> dict[str, Any] | None:
    """The statement body for ``centre`` and ``period`` at ``moment``; None if it is empty."""
    centre_of(state, centre)
    if moment is None or moment < period.start:
        raise Refused(
            f"period {period.text} begins {local_text(period.start)} (Asia/Shanghai); "
            "a statement can be issued once its period has begun",
            reason="PERIOD_NOT_STARTED",
            details={"period": period.text, "period_start": format_time(period.start)},
        )
    lines = pending_lines(state, centre, period)
    if not lines:
        return None
    settlement = book(state)
    sequence = settlement.sequences.get((centre, period.text), 0) + 1
    previous = settlement.by_centre.get(centre, pvector())
    return {
        "statement": statement_id(centre, period.text, sequence),
        "centre": centre,
        "period": period.text,
        "cadence": period.cadence,
        "period_start": format_time(period.start),
        "period_end": format_time(period.end),
        "sequence": sequence,
        "previous": previous[-1] if previous else None,
        "lines": lines,
        "totals": totals_of(lines),
    }


def _nothing(centre: str, period: Period) -> Refused:
    return Refused(
        f"centre {centre} has nothing to settle for {period.text}: no unsettled claims "
        "recorded in the period and no corrections of settled claims",
        reason="NOTHING_TO_SETTLE",
        details={"centre": centre, "period": period.text},
    )


def statement_body(
    state: LedgerState, *, centre: str, period: str, at: datetime | None = None
) -> dict[str, Any]:
    """Body of ``statement.issue``: what a statement of ``centre`` for ``period`` holds now.

    ``at`` is the entry's effective time (default: the ledger's); the period must have
    begun by then. Raises ``Refused(NOTHING_TO_SETTLE)`` when there is nothing in it.
    The service calls this inside its write transaction and signs the result with the log
    key, so that no claim can slip in between composing and recording.
    """
    found = parse_period(period)
    body = _compose(state, centre, found, at or state.time)
    if body is None:
        raise _nothing(centre, found)
    return body


# --- the rule ----------------------------------------------------------------------------


def _first_difference(stated: Any, expected: Any, path: str = "body") -> str | None:
    if isinstance(stated, dict) and isinstance(expected, dict):
        for key in sorted(set(stated) | set(expected)):
            if key not in stated or key not in expected:
                return f"{path}.{key}"
            found = _first_difference(stated[key], expected[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(stated, list) and isinstance(expected, list):
        for i, (a, b) in enumerate(zip(stated, expected, strict=False)):
            found = _first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None if len(stated) == len(expected) else f"{path} (length)"
    same = stated == expected and type(stated) is type(expected)
    return None if same else path


def _diagnose(
    state: LedgerState,
    body: Mapping[str, Any],
    expected: Mapping[str, Any] | None,
    centre: str,
    period: Period,
) -> NoReturn:
    """Raise the most specific refusal for a statement body that is not the expected one."""
    settlement = book(state)
    stated_lines = body.get("lines")
    if not isinstance(stated_lines, list):
        raise InvalidInput("statement.issue: body.lines must be a list", reason="MALFORMED_BODY")
    seen: set[tuple[str, str]] = set()
    for i, line in enumerate(stated_lines):
        r = Reader(line, f"body.lines[{i}]", "MALFORMED_BODY").obj(LINE_FIELDS)
        kind = r.choice("type", ("claim", "adjustment"))
        record_id = r.text("record_id", max_len=128)
        record = claim_book(state).claims.get((centre, record_id))
        if record is None:
            raise NotFound(
                f"body.lines[{i}]: centre {centre} has no claim {record_id!r}",
                reason="UNKNOWN_CLAIM",
                details={"line": i + 1, "record_id": record_id},
            )
        done = settlement.settled.get((centre, record_id))
        if kind == "claim" and done is not None:
            raise Conflict(
                f"body.lines[{i}]: claim {record_id} of {centre} was already settled by "
                f"statement {done.first}; a claim is settled exactly once",
                reason="ALREADY_SETTLED",
                details={"line": i + 1, "record_id": record_id, "statement": done.first},
            )
        if kind == "claim" and not period.contains(record.at):
            raise InvalidInput(
                f"body.lines[{i}]: claim {record_id} was recorded {local_text(record.at)} "
                f"(Asia/Shanghai), outside period {period.text}",
                reason="NOT_IN_PERIOD",
                details={"line": i + 1, "record_id": record_id, "period": period.text},
            )
        seen.add((kind, record_id))
    if expected is None:
        raise _nothing(centre, period)
    missing = [
        (line["type"], line["record_id"])
        for line in expected["lines"]
        if (line["type"], line["record_id"]) not in seen
    ]
    if missing:
        kind, record_id = missing[0]
        raise InvalidInput(
            f"the statement leaves out {'claim' if kind == 'claim' else 'the correction of'} "
            f"{record_id} of {centre} (and {len(missing) - 1} more); a statement settles "
            "every claim of its period not yet settled and every correction since",
            reason="STATEMENT_INCOMPLETE",
            details={"record_id": record_id, "type": kind, "missing": len(missing)},
        )
    where = _first_difference(dict(body), dict(expected))
    raise InvalidInput(
        f"the statement differs from what the ledger settles at {where}",
        reason="STATEMENT_MISMATCH",
        details={"field": where or "body"},
    )


def apply_statement(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    r = body_reader(entry, "MALFORMED_BODY").obj(STATEMENT_FIELDS)
    centre = r.text("centre", max_len=32)
    centre_of(state, centre)
    period = parse_period(r.child("period").value)
    cadence = r.choice("cadence", CADENCES)
    if cadence != period.cadence:
        raise InvalidInput(
            f"period {period.text} is {period.cadence}, but the body says {cadence}",
            reason="PERIOD_CADENCE",
        )
    expected = _compose(state, centre, period, ctx.time)
    if expected is None or dict(entry.body) != expected:
        _diagnose(state, entry.body, expected, centre, period)
    # mutate
    settlement = book(state)
    sid = expected["statement"]
    signers = tuple(s.verifier.key_id for s in ctx.signers)
    statement = Statement(
        sid, centre, period.text, expected["sequence"], ctx.index, ctx.time, expected, signers
    )
    settlement.statements = settlement.statements.set(sid, statement)
    issued = settlement.by_centre.get(centre, pvector())
    settlement.by_centre = settlement.by_centre.set(centre, issued.append(sid))
    settlement.sequences = settlement.sequences.set((centre, period.text), expected["sequence"])
    settled, first_settled = settlement.settled.mutate(), []
    for line in expected["lines"]:
        key = (centre, line["record_id"])
        done = settled.get(key)
        if done is None:
            done = Settled(0)
            first_settled.append(key)
        settled[key] = Settled(
            done.amount_fen + line["amount_fen"],
            (*done.lines, (sid, line["line"], line["amount_fen"])),
        )
    settlement.settled = settled.finish()
    known = settlement.settled_by_centre.get(centre, pvector())
    settlement.settled_by_centre = settlement.settled_by_centre.set(
        centre, known.extend(first_settled)
    )
    totals = expected["totals"]
    return {
        "statement": sid,
        "centre": centre,
        "period": period.text,
        "sequence": expected["sequence"],
        "lines": totals["lines"],
        "amount_fen": totals["amount_fen"],
        "cost_fen": totals["cost_fen"],
    }


# --- read side ---------------------------------------------------------------------------


def statement_view(state: LedgerState, statement: str) -> dict[str, Any]:
    """The statement as recorded (its body), with its log index, time and signers."""
    found = statement_of(state, statement)
    return {
        **found.body,
        "index": found.index,
        "at": format_time(found.at),
        "signed_by": list(found.signed_by),
    }


def statements_of(
    state: LedgerState, centre: str | None = None, period: str | None = None
) -> list[dict[str, Any]]:
    """Statements (without their lines), in log order; of one centre and period if given."""
    settlement = book(state)
    ids = (
        settlement.by_centre.get(centre, [])
        if centre is not None
        else sorted(settlement.statements, key=lambda s: settlement.statements[s].index)
    )
    out = []
    for sid in ids:
        found = settlement.statements[sid]
        if period is not None and found.period != period:
            continue
        body = found.body
        out.append(
            {
                "statement": sid,
                "centre": found.centre,
                "period": found.period,
                "sequence": found.sequence,
                "previous": body["previous"],
                "index": found.index,
                "at": format_time(found.at),
                "lines": body["totals"]["lines"],
                "amount_fen": body["totals"]["amount_fen"],
                "cost_fen": body["totals"]["cost_fen"],
            }
        )
    return out


def settlement_of_claim(state: LedgerState, centre: str, record_id: str) -> dict[str, Any] | None:
    """How a claim was settled: the amount so far and the statement lines; None if not yet."""
    done = book(state).settled.get((centre, record_id))
    if done is None:
        return None
    return {
        "settled_fen": done.amount_fen,
        "statement": done.first,
        "lines": [{"statement": s, "line": n, "amount_fen": a} for s, n, a in done.lines],
    }


def centre_settlement(state: LedgerState, centre: str) -> dict[str, int]:
    """A centre's position: net subsidy granted, settled so far, and what is still due."""
    settlement = book(state)
    granted = unsettled = 0
    settled = sum(
        settlement.settled[k].amount_fen for k in settlement.settled_by_centre.get(centre, ())
    )
    claims = claim_book(state)
    for record_id in claims.by_centre.get(centre, ()):
        record = claims.claims[(centre, record_id)]
        granted += record.net_fen
        if (centre, record_id) not in settlement.settled:
            unsettled += record.net_fen
    return {
        "granted_fen": granted,
        "settled_fen": settled,
        "due_fen": granted - settled,
        "unsettled_claims_fen": unsettled,
        "statements": len(settlement.by_centre.get(centre, [])),
    }
