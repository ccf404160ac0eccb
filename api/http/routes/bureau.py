"""The bureau's reports (主管部门/财政): budget used and remaining, per entity, centre, month.

Roles ``admin`` and ``auditor``; read-only, from the fold of the committed log. Every
figure is for one **budget year** (``?year=``, default: the current year in Asia/Shanghai),
the year of the entry that paid (a claim's or grant's effective time), which is how the
caps count pools (``ledger.caps``). Subsidies are net of reversals and clawbacks, which are
counted against the year of what they correct; held amounts are open holds.

* ``GET /v1/bureau/budget``: per programme and per pool: limit, used, held, remaining.
* ``GET /v1/bureau/entities``: per entity: claims, cost, subsidy, grants; vouchers.
* ``GET /v1/bureau/centres``: per centre: claims, cost, subsidy; settled and still due.
* ``GET /v1/bureau/months``: per month: claims, cost, subsidy, grants, by programme.
* ``GET /v1/bureau/{report}.csv`` / ``.xlsx``, and ``GET /v1/bureau/report.xlsx`` (all
  four as sheets): Chinese headings, amounts in 元 with two decimals.

The reports are ``ledger.usecases.views.bureau``; their tables ``api.http.tables``.

Across the reports for one year the totals agree to the fen: the programmes' ``used_fen``
(claims and grants), the entities' ``total_fen``, and the months' ``total_fen``; the
centres' ``subsidy_fen`` is the claims part of it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.errors import problem_responses
from api.http import exports
from api.http.auth import bearer, require
from api.http.deps import reading
from api.http.paging import PageInfo, Paging, link_next, page_of
from api.http.tables import REPORTS
from ledger.usecases.views import bureau

ROLES = ("admin", "auditor")
router = APIRouter(
    prefix="/v1/bureau",
    tags=["bureau"],
    dependencies=[Depends(bearer), Depends(require(*ROLES))],
    responses=problem_responses(400, 401, 403),
)
YearQuery = Annotated[
    int | None,
    Query(ge=2000, le=2100, description="budget year (Asia/Shanghai); default: this year"),
]
ReportName = Annotated[str, Path(pattern=r"^(budget|entities|centres|months)$")]


# --- response models -------------------------------------------------------------------------


class BudgetRow(BaseModel):
    id: str
    round: str | None
    label: str
    kind: str = Field(
        description="programme, pool, or scheme_pool (a yearly pool shared by a scheme's rounds)"
    )
    period: str = Field(description="the budget year")
    limit_fen: int | None = Field(description="the pool; null: the programme has none")
    used_fen: int = Field(description="paid: claims and grants, net of corrections")
    held_fen: int = Field(description="open holds")
    remaining_fen: int | None
    pool: str | None = Field(description="programmes: the 算力券 pool they draw on")
    programmes: list[str] = Field(description="pools: the programmes that draw on it")


class Budget(BaseModel):
    size: int
    as_of: str
    year: int
    period: str
    years: list[int] = Field(description="budget years with any payment")
    pools: list[BudgetRow]
    programmes: list[BudgetRow]
    totals: dict[str, int] = Field(description="used_fen and held_fen over the programmes")


class Paid(BaseModel):
    """Claims paid in the budget year (net of corrections)."""

    claims: int = Field(description="claims and captures paid in the year")
    cost_fen: int = Field(description="the cost of their usage")
    subsidy_fen: int = Field(description="their net subsidy")


class Totals(Paid):
    """Claims and one-time grants paid in the budget year."""

    grants_fen: int = Field(description="net grants paid in the year")
    total_fen: int = Field(description="subsidy + grants")


class EntityRow(Totals):
    uscc: str
    name: str
    district: str = Field(description="its 区(市)县")
    vouchers: int = Field(description="vouchers it holds")
    face_value_fen: int = Field(description="all its vouchers, whatever year")
    balance_fen: int = Field(description="left on its vouchers now")


class CentreRow(Paid):
    centre: str
    name: str
    granted_fen: int = Field(description="net subsidy of all its claims, every year")
    settled_fen: int = Field(description="settled on statements so far")
    due_fen: int = Field(description="granted - settled: what its next statements will pay")
    statements: int


class MonthRow(Totals):
    month: str = Field(description="YYYY-MM (Asia/Shanghai)")
    by_programme: dict[str, int] = Field(description="total by round/programme")
    by_round: dict[str, int] = Field(description="total by round (several rounds at once)")


class EntityReport(PageInfo):
    size: int
    year: int
    count: int = Field(description="overall: entities in the report, on all pages")
    entities: list[EntityRow]
    totals: Totals = Field(description="overall: over every entity, not only this page")


class CentreReport(PageInfo):
    size: int
    year: int
    count: int = Field(description="overall: centres in the report, on all pages")
    centres: list[CentreRow]
    totals: dict[str, int] = Field(description="overall: over every centre, not only this page")


class MonthReport(BaseModel):
    size: int
    year: int
    months: list[MonthRow]
    totals: Totals
    by_round: dict[str, int] = Field(description="the year's total by round")


def _report(request: Request, name: str, year: int | None) -> dict[str, Any]:
    with reading(request) as snapshot:
        return bureau.report(snapshot, name, year)


# --- routes ------------------------------------------------------------------------------------


REPORT_MODELS: dict[str, tuple[type[BaseModel], str]] = {
    "budget": (Budget, "Budget used and remaining per programme and per pool, for a budget year."),
    "entities": (
        EntityReport,
        "Per entity: claims, cost, subsidy and grants paid in the year; its vouchers.",
    ),
    "centres": (
        CentreReport,
        "Per centre: claims paid in the year; what has been settled and what is due.",
    ),
    "months": (
        MonthReport,
        "Per month of the year: claims, cost, subsidy, grants, and totals by programme.",
    ),
}


def _report_route(name: str, model: type[BaseModel], summary: str) -> None:
    def answer(request: Request, year: YearQuery = None) -> dict[str, Any]:
        return _report(request, name, year)

    answer.__doc__ = summary
    router.add_api_route(f"/{name}", answer, methods=["GET"], response_model=model, name=name)


def _paged_report_route(name: str, key: str, model: type[BaseModel], summary: str) -> None:
    """A report with a row per entity or centre: one page of rows (the cursor: the last
    row's ``key``); ``totals`` and ``count`` are over every row (the whole year)."""

    def answer(
        request: Request, response: Response, page: Paging, year: YearQuery = None
    ) -> dict[str, Any]:
        found = _report(request, name, year)
        rows = found[name]
        chosen = page_of(rows, lambda row: row[key], page)
        link_next(request, response, chosen.next_cursor)
        return {**found, name: chosen.items, "count": len(rows), "next_cursor": chosen.next_cursor}

    answer.__doc__ = summary
    router.add_api_route(f"/{name}", answer, methods=["GET"], response_model=model, name=name)


PAGED_REPORTS = {"entities": "uscc", "centres": "centre"}  # budget, months: a row per
# programme, pool or month, bounded by the policy and the calendar

for _name, (_model, _summary) in REPORT_MODELS.items():
    if _name in PAGED_REPORTS:
        _paged_report_route(_name, PAGED_REPORTS[_name], _model, _summary)
    else:
        _report_route(_name, _model, _summary)


@router.get("/report.xlsx", response_class=Response, responses=exports.FILE_RESPONSES["xlsx"])
def workbook(request: Request, year: YearQuery = None) -> Response:
    """All four reports as one workbook (预算执行, 按单位, 按计算中心, 按月)."""
    tables = [sheet.table(_report(request, name, year)) for name, sheet in REPORTS.items()]
    return exports.download(tables, "xlsx", "bureau-report")


@exports.file_routes(router, "/{report}", responses=problem_responses(404))
def report_file(request: Request, report: ReportName, year: YearQuery = None) -> Response:
    """One report as CSV or an XLSX workbook: budget, entities, centres or months."""
    answer = _report(request, report, year)
    table = REPORTS[report].table(answer)
    return exports.download([table], exports.format_of(request), f"{report}-{answer['year']}")
