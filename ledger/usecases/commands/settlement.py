"""Settlement statements (结算单), recorded by the log key in parts (``ledger.settlement``).

A statement is an open entry, as many line parts as its lines need, and a close entry.
:func:`issue_statement` runs them each in its own write (``write``: one use case per
transaction, as ``Service.write`` does), so that claims keep being recorded while a quarter
of 10^6 lines is listed, and a statement left open by a crash is resumed where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from ledger import settlement
from ledger.entry import Entry
from ledger.errors import Conflict
from ledger.usecases.commands.log import log_signer
from ledger.usecases.unit_of_work import Appended, UnitOfWork
from ledger.usecases.views import as_of

P = ParamSpec("P")
R = TypeVar("R")
Write = Callable[..., Any]
"""Runs a use case in its own transaction: ``write(usecase, *args, **kwargs)``."""

PARTS_PER_WRITE = 8  # ~1,400 lines a transaction: few commits, and claims still come between


def _signed(uow: UnitOfWork, kind: str, body: dict[str, Any]) -> Entry:
    return uow.sign(kind, body, log_signer(uow))


def open_statement(uow: UnitOfWork, *, centre: str, period: str) -> str:
    """Open ``centre``'s statement for ``period``, or find the one already open for it (a
    statement interrupted part-way); its id. Another period's open statement is a conflict."""
    book = settlement.book(uow.state)
    open_id = book.open_by_centre.get(centre)
    if open_id is not None:
        found = book.statements[open_id]
        if found.period.text != settlement.parse_period(period).text:
            raise Conflict(
                f"statement {open_id} of centre {centre} is still open; issue it for "
                f"{found.period.text} first",
                reason="STATEMENT_OPEN",
                details={"statement": open_id},
            )
        return open_id
    moment = as_of(uow.state, uow.now())
    body = settlement.open_body(uow.state, centre=centre, period=period, at=moment)
    uow.append(_signed(uow, "statement.open", body))
    return str(body["statement"])


def list_statement_lines(uow: UnitOfWork, *, statement: str, parts: int = PARTS_PER_WRITE) -> int:
    """Record up to ``parts`` more line parts of an open statement; how many were recorded
    (0: every line is listed)."""
    done = 0
    while done < parts and settlement.has_lines_left(uow.state, statement):
        body = settlement.lines_body(uow.state, statement)
        uow.append(_signed(uow, "statement.lines", body))
        done += 1
    return done


def close_statement(uow: UnitOfWork, *, statement: str) -> Appended:
    """Close a statement whose lines are all listed."""
    body = settlement.close_body(uow.state, statement)
    return uow.append(_signed(uow, "statement.close", body))


def issue_statement(write: Write, *, centre: str, period: str) -> Appended:
    """Open (or resume), list every line, close: ``centre``'s statement for ``period``.

    Each step is one ``write``; the result is the close entry's (its ``result`` has the
    statement id, lines and totals)."""
    statement = str(write(open_statement, centre=centre, period=period))
    while write(list_statement_lines, statement=statement):
        pass
    closed: Appended = write(close_statement, statement=statement)
    return closed


def issue_statement_here(uow: UnitOfWork, *, centre: str, period: str) -> Appended:
    """:func:`issue_statement` inside one unit of work (tests, simulations, small logs)."""

    def write(usecase: Callable[Concatenate[UnitOfWork, P], R], *args: Any, **kw: Any) -> Any:
        return usecase(uow, *args, **kw)

    return issue_statement(write, centre=centre, period=period)
