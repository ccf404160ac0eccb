"""Settlement statements (结算单) over HTTP: issue (bureau), read and export (centres, auditors).

* ``POST /v1/statements`` ``{centre, period}`` (``admin``): records the statement as the log
  key's ``statement.open``, ``statement.lines`` parts and ``statement.close``
  (``ledger.settlement``), each part built inside a write transaction of its own so that it
  holds exactly what the fold expects and claims keep coming in between; a statement left
  open (a crash) is finished by asking again. 201 with the statement; 422
  ``NOTHING_TO_SETTLE`` / ``PERIOD_NOT_STARTED`` / ``PERIOD_CADENCE`` when it cannot be.
* ``GET /v1/statements`` (``admin``, ``auditor``, ``centre``: its own only): the list.
* ``GET /v1/statements/pending?centre=&period=&cursor=&limit=``: what a statement would hold
  if issued now: overall totals and one page of lines (``Link: rel="next"``).
* ``GET /v1/statements/{id}``: header, status, totals and parts; ``…/lines?cursor=&limit=``:
  its lines page by page; ``….csv``, ``….xlsx``: exports of every line, streamed, with
  Chinese headings and amounts in 元 with two decimals.

A centre token sees its own centre's statements only (403 ``NOT_YOUR_CENTRE``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from api.errors import problem_responses
from api.http import exports
from api.http.auth import bearer, check_centre, require
from api.http.deps import entry_reader, reading, service_of
from api.http.paging import (
    PageInfo,
    PageRequest,
    Paging,
    int_cursor,
    link_next,
    page_of,
    page_query,
)
from api.http.tables import statement_tables
from ledger import entities
from ledger.state import LedgerState
from ledger.store.tokens import Principal
from ledger.usecases.commands.settlement import issue_statement as issue
from ledger.usecases.views import statements
from ledger.usecases.views.entities import programme_label
from ledger.usecases.views.statements import MAX_LINES

READ_ROLES = ("admin", "auditor", "centre")
CENTRE_PATTERN = r"^[a-z0-9][a-z0-9\-]{0,31}$"
PERIOD_PATTERN = r"^\d{4}(-(0[1-9]|1[0-2])|-Q[1-4])?$"
STATEMENT_PATTERN = r"^[a-z0-9][a-z0-9\-]{0,31}\.\d{4}(-(0[1-9]|1[0-2])|-Q[1-4])?\.[1-9]\d{0,8}$"

router = APIRouter(
    prefix="/v1/statements",
    tags=["statements"],
    dependencies=[Depends(bearer)],
    responses=problem_responses(400, 401, 403, 404),
)

Reader = Annotated[Principal, Depends(require(*READ_ROLES))]
Admin = Annotated[Principal, Depends(require("admin"))]
StatementPath = Annotated[
    str,
    Path(description="e.g. nscc-cd.2023-Q3.1 (centre.period.sequence)", pattern=STATEMENT_PATTERN),
]
CentreQuery = Annotated[str | None, Query(pattern=CENTRE_PATTERN)]
PeriodQuery = Annotated[
    str | None, Query(description="2023-09, 2023-Q3 or 2023", pattern=PERIOD_PATTERN)
]


# --- models ----------------------------------------------------------------------------------


class StatementLine(BaseModel):
    line: int = Field(description="1, 2, …")
    type: str = Field(description="claim (first settlement) or adjustment (a later correction)")
    record_id: str = Field(description="the centre's usage record id")
    claim_index: int = Field(description="the log index of the claim or capture")
    kind: str = Field(description="claim or capture")
    voucher: str
    round: str = Field(description="the policy round of the voucher")
    programme: str
    holder: str = Field(description="统一社会信用代码 of the voucher holder")
    captured_at: str
    cost_fen: int = Field(description="the usage's cost; 0 on an adjustment line")
    subsidy_fen: int = Field(description="the subsidy decided when it was claimed")
    clawed_back_fen: int
    reversed_index: int | None
    settled_before_fen: int = Field(description="settled by earlier statements")
    amount_fen: int = Field(description="what this line pays the centre (negative: owed back)")
    proof: str = Field(description="inclusion proof of the claim")


class ProgrammeTotal(BaseModel):
    round: str
    programme: str
    lines: int = Field(description="statement lines counted here")
    cost_fen: int = Field(description="the cost of their usage")
    amount_fen: int = Field(description="what they pay the centre")


class StatementTotals(BaseModel):
    lines: int
    claims: int
    adjustments: int
    cost_fen: int
    amount_fen: int = Field(description="the statement's total: what the city pays the centre")
    by_programme: list[ProgrammeTotal]


class Part(BaseModel):
    index: int = Field(description="log index of the statement.lines entry")
    first_line: int
    lines: int


class Header(BaseModel):
    centre: str
    period: str
    cadence: str
    period_start: str
    period_end: str = Field(description="exclusive")
    sequence: int
    previous: str | None = Field(description="the centre's previous statement")
    totals: StatementTotals = Field(description="of every line (page or not): the ledger's")
    lines_sha256: str = Field(description="the chain over every line (docs/settlement.md)")


class StatementOut(Header):
    statement: str
    status: str = Field(description="open (lines still being listed) or closed")
    index: int = Field(description="log index of statement.open (the cut)")
    at: str
    closed_index: int | None = Field(description="log index of statement.close")
    closed_at: str | None
    signed_by: list[str] = Field(description="key ids of the close entry's signatures")
    parts: list[Part]
    proof: str = Field(description="inclusion proof of the close (or open) entry")
    entry: str = Field(description="the open entry: /v1/log/entries/{index}")


class LinesPage(PageInfo):
    statement: str
    size: int = Field(description="the log size this answer reflects")
    lines: list[StatementLine] = Field(description="this page of lines")
    next: int | None = Field(description="the `after` of the next page; null on the last")
    entries: list[int] = Field(description="log indices of the statement.lines entries read")


class PendingOut(Header, PageInfo):
    statement: None = None
    size: int = Field(description="the log size this answer reflects")
    lines: list[StatementLine] = Field(description="this page of lines")
    next: int | None = Field(description="the `after` of the next page; null on the last")


class StatementSummary(BaseModel):
    statement: str
    centre: str
    period: str
    sequence: int
    previous: str | None
    status: str
    index: int
    at: str
    lines: int
    amount_fen: int
    cost_fen: int
    proof: str


class StatementList(PageInfo):
    size: int
    count: int = Field(description="overall: every statement listed, not only this page")
    statements: list[StatementSummary]


class IssueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    centre: StrictStr = Field(pattern=CENTRE_PATTERN, description="e.g. nscc-cd")
    period: StrictStr = Field(
        pattern=PERIOD_PATTERN, description="per the policy's cadence: 2023-Q3, 2023-09 or 2023"
    )


# --- routes ----------------------------------------------------------------------------------

LinePaging = Annotated[
    PageRequest, Depends(page_query(default=1000, maximum=MAX_LINES))
]  # the cursor: the last line already read


def _paged(response: Response, request: Request, answer: dict[str, Any]) -> dict[str, Any]:
    """A page of lines with ``next_cursor`` and its ``Link: rel="next"`` header."""
    next_cursor = None if answer["next"] is None else str(answer["next"])
    link_next(request, response, next_cursor)
    return {**answer, "next_cursor": next_cursor}


@router.get("", response_model=StatementList)
def list_statements(
    request: Request,
    response: Response,
    principal: Reader,
    page: Paging,
    centre: CentreQuery = None,
    period: PeriodQuery = None,
) -> dict[str, Any]:
    """Statements in log order (a centre token: its own centre's only); the cursor is the
    log index of a statement's opening entry."""
    if principal.role == "centre":
        if centre is not None:
            check_centre(principal, centre)
        centre = principal.centre or ""
    with reading(request) as snapshot:
        answer = statements.statement_list(snapshot.state, centre, period)
    chosen = page_of(answer["statements"], lambda x: int(x["index"]), page, int_cursor)
    link_next(request, response, chosen.next_cursor)
    return {
        **answer,
        "count": len(answer["statements"]),
        "statements": chosen.items,
        "next_cursor": chosen.next_cursor,
    }


@router.get("/pending", response_model=PendingOut, responses=problem_responses(422))
def pending(
    request: Request,
    response: Response,
    principal: Reader,
    centre: Annotated[str, Query(pattern=CENTRE_PATTERN)],
    period: Annotated[str, Query(description="2023-09, 2023-Q3 or 2023", pattern=PERIOD_PATTERN)],
    page: LinePaging,
) -> dict[str, Any]:
    """What a statement for ``centre`` and ``period`` would hold if it were issued now:
    the totals of every line and one page of lines (none when there is nothing to settle).
    Nothing is recorded."""
    check_centre(principal, centre)
    with reading(request) as snapshot:
        answer = statements.pending_statement(
            snapshot, centre, period, after=page.after_index(0), limit=page.limit
        )
    return _paged(response, request, answer)


@router.post(
    "",
    status_code=201,
    response_model=StatementOut,
    responses=problem_responses(409, 422),
)
def issue_statement(request: Request, principal: Admin, order: IssueRequest) -> dict[str, Any]:
    """Issue the statement of ``centre`` for ``period``: every claim of the period not yet
    settled, and every correction of a settled claim since the centre's last statement;
    recorded as statement.open, statement.lines parts and statement.close, signed by the
    log key. Asked again after an interruption, it finishes the open statement."""
    service = service_of(request)
    done = issue(service.write, centre=order.centre, period=order.period)
    with reading(request) as snapshot:
        return statements.statement(snapshot.state, done.result["statement"])


def _statement(state: LedgerState, principal: Principal, statement: str) -> dict[str, Any]:
    view = statements.statement(state, statement)
    check_centre(principal, view["centre"])
    return view


@exports.file_routes(router, "/{statement}")
def statement_file(request: Request, principal: Reader, statement: StatementPath) -> Response:
    """Every line of the statement as CSV (UTF-8 with BOM, a 合计 row), or the statement as
    a workbook: 结算明细, 按项目汇总, 按凭证汇总, 结算单信息. Streamed: a 10^6-line statement
    is never held whole."""
    with reading(request) as snapshot:
        state = snapshot.state
        view = _statement(state, principal, statement)
    people = entities.book(state).entities
    lines = statements.all_statement_lines(state, statement, entry_reader(request))

    def name_of(uscc: str) -> str:
        found = people.get(uscc)
        return found.name if found else ""

    def label_of(round_id: str, programme: str) -> str:
        return programme_label(state, round_id, programme)

    tables = statement_tables(view, lines, name_of, label_of)
    return exports.download(tables, exports.format_of(request), f"statement-{statement}")


@router.get("/{statement}/lines", response_model=LinesPage)
def statement_lines(
    request: Request,
    response: Response,
    principal: Reader,
    statement: StatementPath,
    page: LinePaging,
) -> dict[str, Any]:
    """The statement's lines after line ``after``, at most ``limit``, read from its
    statement.lines entries; ``Link: rel="next"`` names the next page."""
    with reading(request) as snapshot:
        _statement(snapshot.state, principal, statement)
        answer = statements.statement_lines(
            snapshot.state,
            statement,
            entry_reader(request),
            after=page.after_index(0),
            limit=page.limit,
        )
    return _paged(response, request, answer)


@router.get("/{statement}", response_model=StatementOut)
def get_statement(request: Request, principal: Reader, statement: StatementPath) -> dict[str, Any]:
    """One statement: header, status, totals and parts, with its inclusion proof."""
    with reading(request) as snapshot:
        return _statement(snapshot.state, principal, statement)
