"""Settlement statements (结算单) over HTTP: issue (bureau), read and export (centres, auditors).

* ``POST /v1/statements`` ``{centre, period}`` (``admin``): records a ``statement.issue``
  entry signed by the log key, built inside the write transaction (``ledger.settlement``)
  so that it holds exactly what the fold expects. 201 with the statement; 422
  ``NOTHING_TO_SETTLE`` / ``PERIOD_NOT_STARTED`` when it cannot be issued.
* ``GET /v1/statements`` (``admin``, ``auditor``, ``centre``: its own only): the list.
* ``GET /v1/statements/pending?centre=&period=``: what a statement would hold if issued now.
* ``GET /v1/statements/{id}``, ``….csv``, ``….xlsx``: one statement, and its exports with
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
from api.http.deps import reading, service_of
from api.http.tables import statement_tables
from ledger import entities
from ledger.state import LedgerState
from ledger.store.tokens import Principal
from ledger.usecases.commands.settlement import issue_statement as issue
from ledger.usecases.views import statements
from ledger.usecases.views.entities import programme_label

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


class VoucherTotal(ProgrammeTotal):
    voucher: str
    holder: str = Field(description="统一社会信用代码 of the voucher holder")


class StatementTotals(BaseModel):
    lines: int
    claims: int
    adjustments: int
    cost_fen: int
    amount_fen: int = Field(description="the statement's total: what the city pays the centre")
    by_programme: list[ProgrammeTotal]
    by_voucher: list[VoucherTotal]


class StatementOut(BaseModel):
    statement: str | None = Field(description="its id; null for a pending (unissued) one")
    centre: str
    period: str
    cadence: str
    period_start: str
    period_end: str = Field(description="exclusive")
    sequence: int
    previous: str | None = Field(description="the centre's previous statement")
    lines: list[StatementLine]
    totals: StatementTotals
    index: int | None = Field(description="the statement.issue entry's log index")
    at: str | None
    signed_by: list[str] = Field(description="key ids of the entry's signatures (the log key)")
    proof: str | None = Field(description="inclusion proof of the statement.issue entry")
    entry: str | None = Field(description="the signed entry: /v1/log/entries/{index}")


class StatementSummary(BaseModel):
    statement: str
    centre: str
    period: str
    sequence: int
    previous: str | None
    index: int
    at: str
    lines: int
    amount_fen: int
    cost_fen: int
    proof: str


class StatementList(BaseModel):
    size: int
    statements: list[StatementSummary]


class IssueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    centre: StrictStr = Field(pattern=CENTRE_PATTERN, description="e.g. nscc-cd")
    period: StrictStr = Field(
        pattern=PERIOD_PATTERN, description="per the policy's cadence: 2023-Q3, 2023-09 or 2023"
    )


# --- routes ----------------------------------------------------------------------------------


@router.get("", response_model=StatementList)
def list_statements(
    request: Request, principal: Reader, centre: CentreQuery = None, period: PeriodQuery = None
) -> dict[str, Any]:
    """Statements in log order (a centre token: its own centre's only)."""
    if principal.role == "centre":
        if centre is not None:
            check_centre(principal, centre)
        centre = principal.centre or ""
    with reading(request) as snapshot:
        return statements.statement_list(snapshot.state, centre, period)


@router.get("/pending", response_model=StatementOut, responses=problem_responses(422))
def pending(
    request: Request,
    principal: Reader,
    centre: Annotated[str, Query(pattern=CENTRE_PATTERN)],
    period: Annotated[str, Query(description="2023-09, 2023-Q3 or 2023", pattern=PERIOD_PATTERN)],
) -> dict[str, Any]:
    """What a statement for ``centre`` and ``period`` would hold if it were issued now
    (``lines`` empty when there is nothing to settle). Nothing is recorded."""
    check_centre(principal, centre)
    with reading(request) as snapshot:
        return statements.pending_statement(snapshot, centre, period)


@router.post(
    "",
    status_code=201,
    response_model=StatementOut,
    responses=problem_responses(409, 422),
)
def issue_statement(request: Request, principal: Admin, order: IssueRequest) -> dict[str, Any]:
    """Issue the statement of ``centre`` for ``period``: every claim of the period not yet
    settled, and every correction of a settled claim since the centre's last statement;
    recorded as a ``statement.issue`` entry signed by the log key."""
    done = service_of(request).write(issue, centre=order.centre, period=order.period)
    with reading(request) as snapshot:
        return statements.statement(snapshot.state, done.result["statement"])


def _statement(state: LedgerState, principal: Principal, statement: str) -> dict[str, Any]:
    view = statements.statement(state, statement)
    check_centre(principal, view["centre"])
    return view


@exports.file_routes(router, "/{statement}")
def statement_file(request: Request, principal: Reader, statement: StatementPath) -> Response:
    """The statement's lines as CSV (UTF-8 with BOM, a 合计 row), or the statement as a
    workbook: 结算明细, 按项目汇总, 按凭证汇总, 结算单信息."""
    with reading(request) as snapshot:
        state = snapshot.state
        view = _statement(state, principal, statement)
        people = entities.book(state).entities

        def name_of(uscc: str) -> str:
            found = people.get(uscc)
            return found.name if found else ""

        def label_of(round_id: str, programme: str) -> str:
            return programme_label(state, round_id, programme)

        tables = statement_tables(view, name_of, label_of)
    return exports.download(tables, exports.format_of(request), f"statement-{statement}")


@router.get("/{statement}", response_model=StatementOut)
def get_statement(request: Request, principal: Reader, statement: StatementPath) -> dict[str, Any]:
    """One statement as recorded, with its log index, signers and inclusion proof."""
    with reading(request) as snapshot:
        return _statement(snapshot.state, principal, statement)
