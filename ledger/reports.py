"""What the bureau's reports and an entity's history are made of, kept by the fold.

A report or a history page must not walk every claim of the ledger (a year holds 10^5..10^6
of them), so the fold keeps, as it goes:

* per **budget year**, the tallies the bureau's reports show: per entity, per centre, per
  month and per month and programme (``round/programme``). A claim or capture, or a
  ``grant.pay``, counts in the budget year and month (Asia/Shanghai) of its effective time,
  as the caps count pools (``ledger.caps``); a reversal or clawback counts against the year
  and month of what it corrects: ``ledger.vouchers.budget_year``, the caps' own rule.
* per centre, the net subsidy of its claims over every year (what settlement owes it);
* per entity, its history: a :class:`Mark` per item (claim or capture, reversal, clawback,
  grant) in log order, and the totals of all of them, so a page is built from its own items.

The handlers that pay or correct call :func:`count_claim`, :func:`count_reversal`,
:func:`count_claim_clawback`, :func:`count_grant_clawback` and :func:`count_grant` after
they change their own part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from immutables import Map

from ledger.seq import Seq
from ledger.state import LedgerState
from ledger.vouchers import budget_year_and_month, voucher_of

if TYPE_CHECKING:  # both modules count through this one: no import cycle at run time
    from ledger.claims import ClaimRecord
    from ledger.grants import Grant


class Tally(NamedTuple):
    """What was paid: claims (recorded, reversed ones too), their cost and net subsidy,
    and the net of grants."""

    claims: int = 0
    cost_fen: int = 0
    subsidy_fen: int = 0
    grants_fen: int = 0

    @property
    def total_fen(self) -> int:
        return self.subsidy_fen + self.grants_fen

    def plus(self, other: Tally) -> Tally:
        return Tally(
            self.claims + other.claims,
            self.cost_fen + other.cost_fen,
            self.subsidy_fen + other.subsidy_fen,
            self.grants_fen + other.grants_fen,
        )


@dataclass(frozen=True)
class YearTally:
    """One budget year's tallies, as the reports break them down."""

    entities: Map[str, Tally] = field(default_factory=Map)
    centres: Map[str, Tally] = field(default_factory=Map)
    months: Map[int, Tally] = field(default_factory=Map)
    programmes: Map[tuple[int, str], int] = field(default_factory=Map)  # (month, round/pid)


class Mark(NamedTuple):
    """One item of an entity's history: its log index, its kind (``claim``, ``capture``,
    ``claim.reverse``, ``clawback``, ``grant.pay``), what it is or corrects (a claim's
    (centre, record id) or a grant's id) and the subsidy it shows (negative: a correction)."""

    index: int  # type: ignore[assignment]  # the log index (shadows tuple.index, unused here)
    kind: str
    target: tuple[str, str] | str
    subsidy_fen: int


class History(NamedTuple):
    """An entity's history items in log order, and their totals."""

    marks: Seq[Mark] = Seq()
    cost_fen: int = 0
    subsidy_fen: int = 0

    def add(self, mark: Mark, cost_fen: int) -> History:
        return History(
            self.marks.append(mark), self.cost_fen + cost_fen, self.subsidy_fen + mark.subsidy_fen
        )


@dataclass
class ReportBook:
    years: Map[int, YearTally] = field(default_factory=Map)
    centre_net: Map[str, int] = field(default_factory=Map)  # every year's
    histories: Map[str, History] = field(default_factory=Map)

    def count(
        self, at: datetime, payee: str, centre: str | None, programme: str, paid: Tally
    ) -> None:
        """Add ``paid`` to the tallies of the budget year and month of ``at``."""
        year, month = budget_year_and_month(at)
        found = self.years.get(year) or YearTally()
        centres = found.centres
        if centre is not None:
            centres = centres.set(centre, centres.get(centre, Tally()).plus(paid))
            self.centre_net = self.centre_net.set(
                centre, self.centre_net.get(centre, 0) + paid.subsidy_fen
            )
        key = (month, programme)
        self.years = self.years.set(
            year,
            YearTally(
                entities=found.entities.set(payee, found.entities.get(payee, Tally()).plus(paid)),
                centres=centres,
                months=found.months.set(month, found.months.get(month, Tally()).plus(paid)),
                programmes=found.programmes.set(key, found.programmes.get(key, 0) + paid.total_fen),
            ),
        )

    def mark(self, uscc: str, mark: Mark, cost_fen: int = 0) -> None:
        history = self.histories.get(uscc) or History()
        self.histories = self.histories.set(uscc, history.add(mark, cost_fen))


def book(state: LedgerState) -> ReportBook:
    part: ReportBook = state.part("reports", ReportBook)
    return part


def history_of(state: LedgerState, uscc: str) -> History:
    return book(state).histories.get(uscc) or History()


def centre_net_fen(state: LedgerState, centre: str) -> int:
    """The net subsidy of the centre's claims, every year: what settlement owes it."""
    return book(state).centre_net.get(centre, 0)


def _programme(round_id: str, programme: str) -> str:
    return f"{round_id}/{programme}"


def count_claim(state: LedgerState, record: ClaimRecord) -> None:
    """A claim or capture was recorded."""
    voucher = voucher_of(state, record.voucher)
    reports = book(state)
    paid = Tally(claims=1, cost_fen=record.cost_fen, subsidy_fen=record.subsidy_fen)
    where = _programme(voucher.round, voucher.programme)
    reports.count(record.at, voucher.holder, record.centre, where, paid)
    mark = Mark(record.index, record.kind, (record.centre, record.record_id), record.subsidy_fen)
    reports.mark(voucher.holder, mark, record.cost_fen)


def count_reversal(state: LedgerState, claim: ClaimRecord, index: int) -> None:
    """``claim`` (as it was before) was reversed at ``index``: its net subsidy is undone."""
    voucher = voucher_of(state, claim.voucher)
    reports = book(state)
    undone = Tally(subsidy_fen=-claim.net_fen)
    where = _programme(voucher.round, voucher.programme)
    reports.count(claim.at, voucher.holder, claim.centre, where, undone)
    target = (claim.centre, claim.record_id)
    reports.mark(voucher.holder, Mark(index, "claim.reverse", target, -claim.net_fen))


def count_claim_clawback(
    state: LedgerState, claim: ClaimRecord, amount_fen: int, index: int
) -> None:
    """``amount_fen`` of ``claim``'s subsidy was clawed back at ``index``."""
    voucher = voucher_of(state, claim.voucher)
    reports = book(state)
    where = _programme(voucher.round, voucher.programme)
    reports.count(claim.at, voucher.holder, claim.centre, where, Tally(subsidy_fen=-amount_fen))
    target = (claim.centre, claim.record_id)
    reports.mark(voucher.holder, Mark(index, "clawback", target, -amount_fen))


def count_grant_clawback(state: LedgerState, grant: Grant, amount_fen: int, index: int) -> None:
    """``amount_fen`` of ``grant`` was clawed back at ``index``."""
    reports = book(state)
    where = _programme(grant.round, grant.programme)
    reports.count(grant.at, grant.payee, None, where, Tally(grants_fen=-amount_fen))
    reports.mark(grant.payee, Mark(index, "clawback", grant.id, -amount_fen))


def count_grant(state: LedgerState, grant: Grant) -> None:
    """A grant was paid."""
    reports = book(state)
    where = _programme(grant.round, grant.programme)
    reports.count(grant.at, grant.payee, None, where, Tally(grants_fen=grant.paid_fen))
    reports.mark(grant.payee, Mark(grant.index, "grant.pay", grant.id, grant.paid_fen))
