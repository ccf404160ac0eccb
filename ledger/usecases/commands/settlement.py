"""Settlement statements (结算单), recorded by the log key."""

from __future__ import annotations

from ledger import settlement
from ledger.entry import Entry
from ledger.timeutil import format_time
from ledger.usecases.commands.log import log_signer
from ledger.usecases.unit_of_work import Appended, UnitOfWork
from ledger.usecases.views import as_of


def issue_statement(uow: UnitOfWork, *, centre: str, period: str) -> Appended:
    """Issue ``centre``'s statement for ``period``: every claim of the period not yet
    settled and every correction of a settled claim since its last statement. The body is
    built from the working state, so it holds exactly what the fold expects."""
    moment = as_of(uow.state, uow.now())
    body = settlement.statement_body(uow.state, centre=centre, period=period, at=moment)
    entry = Entry("statement.issue", format_time(moment), body).signed(log_signer(uow))
    return uow.append(entry)
