"""Reconciliation: the centre's own records against the ledger's claims and statements.

    suanli center reconcile --period 2023-Q3 --centre nscc-cd

The centre's side is its agent's outbox (every record, with the ledger's answer as the
agent recorded it) and, with ``--source``, the metering export itself (records the agent
has not read yet count as not sent). The ledger's side is ``ListClaims`` (every claim and
capture of the centre) and, when the bureau has issued them, the settlement statements of
the period (``ListStatements``).

Which records a period covers (``--by``):

* ``claimed`` (default, the settlement view): claims whose ledger time (the entry's ``at``)
  falls in the period, Asia/Shanghai; on the centre's side, records it saw claimed or
  refused in the period, and records still pending or not yet sent when the period is the
  current one (they will be claimed now);
* ``usage``: records whose usage starts in the period, on both sides.

A record in the period on either side is compared with the other side wherever it is.
Every difference is listed:

====================== ===================================================================
kind                   meaning
====================== ===================================================================
``missing-in-ledger``  the centre has the record, the ledger has no claim for it: not sent
                       yet, still pending (attempts and last error shown), or - a real
                       discrepancy - the agent recorded an answer the ledger does not list
``refused``            the ledger refused it (reason, message); ``--allow-refused REASON``
                       counts such refusals as explained instead
``missing-at-centre``  the ledger has a claim the centre has no record of
``differs``            the claim's body differs (voucher, resource, quantity, start, end,
                       cost): between the outbox and the ledger, or the export changed a
                       record after it was stored
``amount-differs``     the subsidy the agent recorded is not the ledger's
``statement-...``      a settlement statement line with no claim (``statement-unknown``),
                       a line whose amounts differ from the claim (``statement-differs``),
                       a statement whose total is not the sum of its lines
                       (``statement-total``), a claim of the period recorded before the
                       period's latest statement but on none (``not-on-statement``); claims
                       recorded after it are counted as not yet settled, not as differences
====================== ===================================================================
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from adapters.outbox import Claimed, Outbox, OutboxRecord, Refusal, Row
from ledger.errors import InvalidInput
from ledger.money import format_fen
from ledger.timeutil import shanghai_end, shanghai_start

if TYPE_CHECKING:
    from adapters.client import RedemptionClient

_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$", re.ASCII)
_MONTH = re.compile(r"^(\d{4})-(\d{2})$", re.ASCII)
_YEAR = re.compile(r"^(\d{4})$", re.ASCII)
_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$", re.ASCII)
BODY = ("voucher", "resource", "quantity", "start", "end", "cost_fen")


@dataclass(frozen=True)
class Period:
    """A stretch of Asia/Shanghai calendar time, [start, end); ``all`` is unbounded."""

    label: str
    start: datetime | None
    end: datetime | None

    def contains(self, moment: datetime) -> bool:
        return (self.start is None or moment >= self.start) and (
            self.end is None or moment < self.end
        )

    @classmethod
    def parse(cls, text: str) -> Period:
        """``2023-Q3``, ``2023-08``, ``2023``, ``2023-07-01..2023-09-30`` (both days
        included) or ``all``."""
        text = text.strip()
        try:
            if text.lower() == "all":
                return cls("all", None, None)
            if m := _QUARTER.match(text):
                year, quarter = int(m[1]), int(m[2])
                first = date(year, 3 * quarter - 2, 1)
                after = date(year + 1, 1, 1) if quarter == 4 else date(year, 3 * quarter + 1, 1)
                return cls(text, shanghai_start(first), shanghai_start(after))
            if m := _MONTH.match(text):
                year, month = int(m[1]), int(m[2])
                first = date(year, month, 1)
                after = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
                return cls(text, shanghai_start(first), shanghai_start(after))
            if m := _YEAR.match(text):
                year = int(m[1])
                return cls(
                    text, shanghai_start(date(year, 1, 1)), shanghai_start(date(year + 1, 1, 1))
                )
            if m := _RANGE.match(text):
                lo, hi = date.fromisoformat(m[1]), date.fromisoformat(m[2])
                if hi < lo:
                    raise ValueError(f"{hi} is before {lo}")
                return cls(text, shanghai_start(lo), shanghai_end(hi))
        except ValueError as exc:
            raise InvalidInput(f"period {text!r}: {exc}") from exc
        raise InvalidInput(
            f"period {text!r} is not YYYY-Qn, YYYY-MM, YYYY, YYYY-MM-DD..YYYY-MM-DD or all"
        )


@dataclass(frozen=True)
class LedgerClaim:
    """A claim (or capture) as ``ListClaims`` returns it."""

    record_id: str
    kind: str
    voucher: str
    resource: str
    quantity: int
    start: str
    end: str
    cost_fen: int
    subsidy_fen: int
    log_index: int
    at: str

    def body(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in BODY}

    @classmethod
    def of(cls, message: Any) -> LedgerClaim:
        """From a ``suanli.v1.ClaimRecord``."""
        body, result = message.body, message.result
        return cls(
            body.record_id,
            message.kind,
            result.voucher or body.voucher,
            body.resource,
            body.quantity,
            body.start,
            body.end,
            body.cost_fen,
            result.subsidy_fen,
            result.log_index,
            result.at,
        )


@dataclass(frozen=True)
class StatementLine:
    """``subsidy_fen`` is what the line pays; ``decided_fen`` the subsidy the claim was
    decided at (they differ when a clawback came before settlement); an ``adjustment``
    line corrects a claim settled earlier (negative, cost 0)."""

    record_id: str
    voucher: str
    cost_fen: int
    subsidy_fen: int
    type: str = "claim"
    decided_fen: int | None = None


@dataclass(frozen=True)
class Statement:
    statement_id: str
    period: str
    total_subsidy_fen: int
    total_cost_fen: int
    lines: tuple[StatementLine, ...]
    log_index: int = 0  # the statement.open entry (its cut): claims before it should be on it
    # With --prefix: the lines and totals above are the prefix's; these are the whole
    # statement's (None when the statement is whole).
    whole_lines: int | None = None
    whole_subsidy_fen: int | None = None

    def only(self, wanted: Callable[[str], bool]) -> Statement:
        """The part of the statement whose lines ``wanted`` keeps, totals its own."""
        lines = tuple(x for x in self.lines if wanted(x.record_id))
        return dataclasses.replace(
            self,
            lines=lines,
            total_subsidy_fen=sum(x.subsidy_fen for x in lines),
            total_cost_fen=sum(x.cost_fen for x in lines),
            whole_lines=len(self.lines),
            whole_subsidy_fen=self.total_subsidy_fen,
        )

    @classmethod
    def of(cls, message: Any) -> Statement:
        """From a ``suanli.v1.Statement``."""
        return cls(
            message.statement_id,
            message.period,
            message.total_subsidy_fen,
            message.total_cost_fen,
            tuple(
                StatementLine(
                    x.record_id,
                    x.voucher,
                    x.cost_fen,
                    x.subsidy_fen,
                    getattr(x, "type", "") or "claim",
                    getattr(x, "decided_subsidy_fen", None),
                )
                for x in message.lines
            ),
            message.log_index,
        )


@dataclass(frozen=True)
class CentreRecord:
    """What the centre knows of one record: its body and, if any, the answer it recorded."""

    record: OutboxRecord
    status: str  # unsent | pending | claimed | refused
    claimed: Claimed | None = None
    refusal: Refusal | None = None
    answered_at: str | None = None
    attempts: int = 0
    last_error: str | None = None
    source_body: tuple[Any, ...] | None = None  # the export's body, when it was re-read

    @classmethod
    def of(cls, row: Row) -> CentreRecord:
        return cls(
            row.record,
            row.status,
            row.claimed,
            row.refusal,
            row.answered_at,
            row.attempts,
            row.last_error,
        )

    def body(self) -> dict[str, Any]:
        r = self.record
        return {
            "voucher": r.voucher,
            "resource": r.resource,
            "quantity": r.quantity,
            "start": r.start,
            "end": r.end,
            "cost_fen": r.cost_fen,
        }


@dataclass(frozen=True)
class Difference:
    kind: str
    record_id: str
    detail: str
    voucher: str = ""


@dataclass
class Report:
    centre: str
    period: Period
    by: str
    centre_records: int = 0
    ledger_claims: int = 0
    matched: int = 0
    centre_subsidy_fen: int = 0
    ledger_subsidy_fen: int = 0
    statements: list[Statement] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    explained: list[Difference] = field(default_factory=list)
    unsettled: int = 0  # claims of the period recorded after its latest statement

    @property
    def ok(self) -> bool:
        return not self.differences

    def counts(self) -> Counter[str]:
        return Counter(d.kind for d in self.differences)

    def to_json(self) -> dict[str, Any]:
        return {
            "centre": self.centre,
            "period": self.period.label,
            "by": self.by,
            "centre_records": self.centre_records,
            "ledger_claims": self.ledger_claims,
            "matched": self.matched,
            "centre_subsidy_fen": self.centre_subsidy_fen,
            "ledger_subsidy_fen": self.ledger_subsidy_fen,
            "statements": [
                {
                    "statement_id": s.statement_id,
                    "period": s.period,
                    "lines": len(s.lines),
                    "total_subsidy_fen": s.total_subsidy_fen,
                    "whole_lines": s.whole_lines,
                    "whole_subsidy_fen": s.whole_subsidy_fen,
                }
                for s in self.statements
            ],
            "by_kind": dict(sorted(self.counts().items())),
            "differences": [d.__dict__ for d in self.differences],
            "explained": [d.__dict__ for d in self.explained],
            "unsettled": self.unsettled,
            "ok": self.ok,
        }


def outbox_records(outbox: Outbox, centre: str) -> dict[str, CentreRecord]:
    """The centre's side from its agent's outbox, by record id, in submission order."""
    return {row.record.record_id: CentreRecord.of(row) for row in outbox.rows(centre)}


def ledger_records(client: RedemptionClient) -> tuple[list[LedgerClaim], list[Statement]]:
    """The ledger's side: every claim of the client's centre, and its statements (none
    when the service has no statements yet)."""
    from adapters.client import RedemptionError

    claims = [LedgerClaim.of(m) for m in client.list_claims(timeout=300.0)]
    try:
        listed = client.statements()
        # ListStatements leaves the lines out; GetStatement has them.
        statements = [Statement.of(client.statement(s.statement_id)) for s in listed]
    except RedemptionError:
        statements = []
    return claims, statements


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    from ledger.timeutil import parse_time

    try:
        return parse_time(text)
    except InvalidInput:
        return None


def reconcile(
    *,
    centre: str,
    period: Period,
    centre_records: Iterable[CentreRecord],
    ledger_claims: Iterable[LedgerClaim],
    statements: Sequence[Statement] = (),
    by: str = "claimed",
    now: datetime | None = None,
    allow_refused: Iterable[str] = (),
    prefixes: Sequence[str] = (),
) -> Report:
    """Compare the two sides over ``period`` and list every difference. With ``prefixes``,
    only records whose id starts with one of them are compared (one cluster of several,
    one event source), on both sides and on the statements."""
    if by not in ("claimed", "usage"):
        raise InvalidInput(f"by {by!r}: expected claimed or usage")
    now = now or datetime.now(UTC)
    allowed = set(allow_refused)
    starts = tuple(prefixes)

    def wanted(record_id: str) -> bool:
        return not starts or record_id.startswith(starts)

    mine: dict[str, CentreRecord] = {
        r.record.record_id: r for r in centre_records if wanted(r.record.record_id)
    }
    theirs: dict[str, LedgerClaim] = {c.record_id: c for c in ledger_claims if wanted(c.record_id)}
    report = Report(centre, period, by)
    _statement_totals(report, statements, period)  # each whole statement adds up
    if starts:
        statements = [s.only(wanted) for s in statements]

    def centre_in(rec: CentreRecord) -> bool:
        if by == "usage":
            moment = _time(rec.record.start)
            return moment is not None and period.contains(moment)
        if rec.claimed is not None:
            moment = _time(rec.claimed.at)
        elif rec.refusal is not None:
            moment = _time(rec.answered_at)
        else:
            moment = now  # pending or unsent: it will be claimed now
        return moment is not None and period.contains(moment)

    def ledger_in(claim: LedgerClaim) -> bool:
        moment = _time(claim.start if by == "usage" else claim.at)
        return moment is not None and period.contains(moment)

    scope_mine = {rid for rid, rec in mine.items() if centre_in(rec)}
    scope_theirs = {rid for rid, claim in theirs.items() if ledger_in(claim)}
    report.centre_records = len(scope_mine)
    report.ledger_claims = len(scope_theirs)
    report.ledger_subsidy_fen = sum(theirs[r].subsidy_fen for r in scope_theirs)
    answers = [mine[r].claimed for r in scope_mine]
    report.centre_subsidy_fen = sum(a.subsidy_fen for a in answers if a is not None)
    order = {rid: i for i, rid in enumerate(mine)}
    for rid in sorted(scope_mine | scope_theirs, key=lambda r: (order.get(r, len(order)), r)):
        found = _compare(rid, mine.get(rid), theirs.get(rid), allowed)
        if not found:
            report.matched += 1
        for difference in found:
            target = (
                report.explained if difference.kind == "refused-allowed" else report.differences
            )
            target.append(difference)
    _statements(report, statements, theirs, scope_theirs, period, by)
    return report


def _compare(
    rid: str, mine: CentreRecord | None, theirs: LedgerClaim | None, allowed: set[str]
) -> list[Difference]:
    if mine is None:
        assert theirs is not None
        detail = (
            f"the ledger has a {theirs.kind} at log index {theirs.log_index}"
            f" ({format_fen(theirs.subsidy_fen)} subsidy) that the centre has no record of"
        )
        return [Difference("missing-at-centre", rid, detail, theirs.voucher)]
    out: list[Difference] = []
    voucher = mine.record.voucher
    if mine.source_body is not None and mine.source_body != mine.record.body():
        fields = [
            f"{name} {first!r} -> {now!r}"
            for name, first, now in zip(BODY, mine.record.body(), mine.source_body, strict=True)
            if first != now
        ]
        detail = "the export changed after the record was stored (stored -> export): "
        out.append(Difference("differs", rid, detail + "; ".join(fields), voucher))
    if theirs is None:
        out.append(_not_in_ledger(rid, mine, allowed))
    else:
        out += _both(rid, mine, theirs)
    return out


def _not_in_ledger(rid: str, mine: CentreRecord, allowed: set[str]) -> Difference:
    """Why a record of the centre has no claim in the ledger."""
    voucher = mine.record.voucher
    if mine.refusal is not None:
        refusal = mine.refusal
        extra = ", ".join(f"{k}={v}" for k, v in sorted(refusal.metadata.items()))
        detail = f"{refusal.reason} ({refusal.code}): {refusal.message}" + (
            f" [{extra}]" if extra else ""
        )
        kind = "refused-allowed" if refusal.reason in allowed else "refused"
        return Difference(kind, rid, detail, voucher)
    if mine.claimed is not None:
        detail = (
            f"the agent recorded a claim at log index {mine.claimed.log_index}"
            f" ({format_fen(mine.claimed.subsidy_fen)}) that the ledger does not list"
        )
    elif mine.status == "pending":
        last = f", last error: {mine.last_error}" if mine.last_error else ""
        detail = f"pending in the outbox ({mine.attempts} attempts{last})"
    else:
        detail = "in the export but not in the outbox: the agent has not read it yet"
    return Difference("missing-in-ledger", rid, detail, voucher)


def _both(rid: str, mine: CentreRecord, theirs: LedgerClaim) -> list[Difference]:
    """How a record of the centre and the ledger's claim of it differ."""
    out: list[Difference] = []
    voucher = mine.record.voucher
    body, other = mine.body(), theirs.body()
    fields = [
        f"{k} {body[k]!r} (centre) vs {other[k]!r} (ledger)" for k in BODY if body[k] != other[k]
    ]
    if fields:
        out.append(Difference("differs", rid, "; ".join(fields), voucher))
    if mine.claimed is not None and mine.claimed.subsidy_fen != theirs.subsidy_fen:
        detail = (
            f"subsidy {format_fen(mine.claimed.subsidy_fen)} recorded by the agent vs"
            f" {format_fen(theirs.subsidy_fen)} in the ledger (log index {theirs.log_index})"
        )
        out.append(Difference("amount-differs", rid, detail, voucher))
    if mine.refusal is not None:
        detail = (
            f"the agent recorded a refusal {mine.refusal.reason} but the ledger has a"
            f" {theirs.kind} at log index {theirs.log_index}"
        )
        out.append(Difference("differs", rid, detail, voucher))
    return out


def _statement_totals(report: Report, statements: Sequence[Statement], period: Period) -> None:
    """A whole statement of the period whose lines do not add up to its total."""
    for statement in statements:
        if period.label not in ("all", statement.period):
            continue
        lines_total = sum(line.subsidy_fen for line in statement.lines)
        if lines_total != statement.total_subsidy_fen:
            report.differences.append(
                Difference(
                    "statement-total",
                    "",
                    f"statement {statement.statement_id}: total"
                    f" {format_fen(statement.total_subsidy_fen)} but its lines add up to"
                    f" {format_fen(lines_total)}",
                )
            )


def _statements(
    report: Report,
    statements: Sequence[Statement],
    claims: Mapping[str, LedgerClaim],
    in_scope: set[str],
    period: Period,
    by: str,
) -> None:
    chosen = [s for s in statements if period.label in ("all", s.period)]
    report.statements = chosen
    if not chosen:
        return
    on_statement: set[str] = set()
    for statement in chosen:
        for line in statement.lines:
            on_statement.add(line.record_id)
            claim = claims.get(line.record_id)
            if line.type != "claim" and claim is not None:
                continue  # an adjustment: a correction of a claim settled before
            if claim is None:
                report.differences.append(
                    Difference(
                        "statement-unknown",
                        line.record_id,
                        f"statement {statement.statement_id} lists a record the ledger has no"
                        " claim for",
                        line.voucher,
                    )
                )
            elif (claim.subsidy_fen, claim.cost_fen, claim.voucher) != (
                line.subsidy_fen if line.decided_fen is None else line.decided_fen,
                line.cost_fen,
                line.voucher,
            ):
                report.differences.append(
                    Difference(
                        "statement-differs",
                        line.record_id,
                        f"statement {statement.statement_id}: subsidy"
                        f" {format_fen(line.subsidy_fen)}, cost {format_fen(line.cost_fen)},"
                        f" voucher {line.voucher}; the claim: {format_fen(claim.subsidy_fen)},"
                        f" {format_fen(claim.cost_fen)}, {claim.voucher}",
                        line.voucher,
                    )
                )
    if by == "claimed":
        latest = max(s.log_index for s in chosen)
        for rid in sorted(in_scope - on_statement):
            claim = claims[rid]
            if claim.log_index > latest:
                report.unsettled += 1  # recorded after the latest statement: settled later
                continue
            report.differences.append(
                Difference(
                    "not-on-statement",
                    rid,
                    f"claimed at {claim.at} (log index {claim.log_index}), before the latest"
                    f" statement of {period.label} (log index {latest}), but on none of them",
                    claim.voucher,
                )
            )
