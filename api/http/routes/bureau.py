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

Across the reports for one year the totals agree to the fen: the programmes' ``used_fen``
(claims and grants), the entities' ``total_fen``, and the months' ``total_fen``; the
centres' ``subsidy_fen`` is the claims part of it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api import exports
from api.auth import bearer, require
from api.errors import problem_responses
from api.routes_grantee import CSV_RESPONSE, XLSX_RESPONSE, download, reading
from ledger import claims as claims_mod
from ledger import entities as entities_mod
from ledger import grants as grants_mod
from ledger import settlement, vouchers
from ledger.caps import book as cap_book
from ledger.caps import programme_budget
from ledger.errors import NotFound
from ledger.policy import book as policy_book
from ledger.state import LedgerState
from ledger.timeutil import SHANGHAI, format_time

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


def _year(moment: datetime) -> int:
    return moment.astimezone(SHANGHAI).year


def _month(moment: datetime) -> int:
    return moment.astimezone(SHANGHAI).month


# --- budget ------------------------------------------------------------------------------------


class BudgetRow(BaseModel):
    id: str
    round: str | None
    label: str
    kind: str = Field(description="programme or pool")
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


def budget_report(state: LedgerState, year: int, now: datetime) -> dict[str, Any]:
    figures = programme_budget(state, now)
    books = policy_book(state)
    programmes: list[dict[str, Any]] = []
    pools: list[dict[str, Any]] = []
    y = str(year)
    for round_id, version in sorted(books.current.items()):
        policy = books.versions[version]
        for pid, programme in policy.programmes.items():
            row = figures["programmes"].get(f"{round_id}/{pid}", {}).get(y, {})
            limit = programme.pool.amount_fen if programme.pool is not None else None
            used, held = int(row.get("paid_fen") or 0), int(row.get("held_fen") or 0)
            pool = policy.pool_for(pid)
            programmes.append(
                {
                    "id": pid,
                    "round": round_id,
                    "label": f"({programme.number}) {programme.title}",
                    "kind": "programme",
                    "period": y,
                    "limit_fen": limit,
                    "used_fen": used,
                    "held_fen": held,
                    "remaining_fen": None if limit is None else limit - used - held,
                    "pool": pool.id if pool else None,
                    "programmes": [],
                }
            )
        for pool in policy.voucher_pools.values():
            row = figures["pools"].get(pool.id, {}).get(y, {})
            used, held = int(row.get("paid_fen") or 0), int(row.get("held_fen") or 0)
            pools.append(
                {
                    "id": pool.id,
                    "round": round_id,
                    "label": pool.name,
                    "kind": "pool",
                    "period": y,
                    "limit_fen": pool.amount_fen,
                    "used_fen": used,
                    "held_fen": held,
                    "remaining_fen": pool.amount_fen - used - held,
                    "pool": None,
                    "programmes": list(pool.programmes),
                }
            )
    years = sorted({int(k[3]) for k in cap_book(state).seen if k[0] == "programme" and len(k) == 4})
    return {
        "size": state.size,
        "as_of": format_time(now),
        "year": year,
        "period": y,
        "years": years,
        "pools": pools,
        "programmes": programmes,
        "totals": {
            "used_fen": sum(p["used_fen"] for p in programmes),
            "held_fen": sum(p["held_fen"] for p in programmes),
        },
    }


# --- per entity, centre, month -------------------------------------------------------------------


class EntityRow(BaseModel):
    uscc: str
    name: str
    district: str
    vouchers: int
    face_value_fen: int = Field(description="all its vouchers, whatever year")
    balance_fen: int = Field(description="left on its vouchers now")
    claims: int = Field(description="claims and captures paid in the year")
    cost_fen: int
    subsidy_fen: int = Field(description="net subsidy of those claims")
    grants_fen: int = Field(description="net grants paid in the year")
    total_fen: int = Field(description="subsidy + grants")


class CentreRow(BaseModel):
    centre: str
    name: str
    claims: int
    cost_fen: int
    subsidy_fen: int = Field(description="net subsidy of its claims paid in the year")
    granted_fen: int = Field(description="net subsidy of all its claims, every year")
    settled_fen: int = Field(description="settled on statements so far")
    due_fen: int = Field(description="granted - settled: what its next statements will pay")
    statements: int


class MonthRow(BaseModel):
    month: str = Field(description="YYYY-MM (Asia/Shanghai)")
    claims: int
    cost_fen: int
    subsidy_fen: int
    grants_fen: int
    total_fen: int
    by_programme: dict[str, int] = Field(description="total by round/programme")


class Totals(BaseModel):
    claims: int
    cost_fen: int
    subsidy_fen: int
    grants_fen: int
    total_fen: int


class EntityReport(BaseModel):
    size: int
    year: int
    entities: list[EntityRow]
    totals: Totals


class CentreReport(BaseModel):
    size: int
    year: int
    centres: list[CentreRow]
    totals: dict[str, int]


class MonthReport(BaseModel):
    size: int
    year: int
    months: list[MonthRow]
    totals: Totals


def _paid_in(state: LedgerState, year: int) -> tuple[list[Any], list[Any]]:
    records = [r for r in claims_mod.book(state).claims.values() if _year(r.at) == year]
    grants = [g for g in grants_mod.book(state).grants.values() if _year(g.at) == year]
    return records, grants


def _totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    keys = ("claims", "cost_fen", "subsidy_fen", "grants_fen", "total_fen")
    return {k: sum(int(r[k]) for r in rows) for k in keys}


def entity_report(state: LedgerState, year: int) -> dict[str, Any]:
    records, grants = _paid_in(state, year)
    vbook = vouchers.book(state)
    rows: dict[str, dict[str, Any]] = {}

    def row(uscc: str) -> dict[str, Any]:
        if uscc not in rows:
            found = entities_mod.book(state).entities.get(uscc)
            held = [vbook.vouchers[v] for v in vbook.by_holder.get(uscc, [])]
            used = cap_book(state).used
            on_hold = cap_book(state).held
            rows[uscc] = {
                "uscc": uscc,
                "name": found.name if found else "",
                "district": found.district if found else "",
                "vouchers": len(held),
                "face_value_fen": sum(v.face_value_fen for v in held),
                "balance_fen": sum(
                    v.face_value_fen
                    - used.get(("voucher", v.id), 0)
                    - on_hold.get(("voucher", v.id), 0)
                    for v in held
                ),
                "claims": 0,
                "cost_fen": 0,
                "subsidy_fen": 0,
                "grants_fen": 0,
                "total_fen": 0,
            }
        return rows[uscc]

    for uscc in vbook.by_holder:
        row(uscc)
    for record in records:
        r = row(vbook.vouchers[record.voucher].holder)
        r["claims"] += 1
        r["cost_fen"] += int(record.result.get("cost_fen", 0))
        r["subsidy_fen"] += record.net_fen
        r["total_fen"] += record.net_fen
    for grant in grants:
        r = row(grant.payee)
        r["grants_fen"] += grant.net_fen
        r["total_fen"] += grant.net_fen
    listed = [rows[k] for k in sorted(rows)]
    return {"size": state.size, "year": year, "entities": listed, "totals": _totals(listed)}


def centre_report(state: LedgerState, year: int) -> dict[str, Any]:
    records, _ = _paid_in(state, year)
    centres = claims_mod.book(state).centres
    rows = []
    for cid in sorted(centres):
        mine = [r for r in records if r.centre == cid]
        position = settlement.centre_settlement(state, cid)
        rows.append(
            {
                "centre": cid,
                "name": centres[cid].name,
                "claims": len(mine),
                "cost_fen": sum(int(r.result.get("cost_fen", 0)) for r in mine),
                "subsidy_fen": sum(r.net_fen for r in mine),
                "granted_fen": position["granted_fen"],
                "settled_fen": position["settled_fen"],
                "due_fen": position["due_fen"],
                "statements": position["statements"],
            }
        )
    keys = ("claims", "cost_fen", "subsidy_fen", "granted_fen", "settled_fen", "due_fen")
    return {
        "size": state.size,
        "year": year,
        "centres": rows,
        "totals": {k: sum(int(r[k]) for r in rows) for k in keys},
    }


def month_report(state: LedgerState, year: int) -> dict[str, Any]:
    records, grants = _paid_in(state, year)
    vbook = vouchers.book(state)
    rows: list[dict[str, Any]] = [
        {
            "month": f"{year:04d}-{m:02d}",
            "claims": 0,
            "cost_fen": 0,
            "subsidy_fen": 0,
            "grants_fen": 0,
            "total_fen": 0,
            "by_programme": {},
        }
        for m in range(1, 13)
    ]
    for record in records:
        r = rows[_month(record.at) - 1]
        voucher = vbook.vouchers[record.voucher]
        key = f"{voucher.round}/{voucher.programme}"
        r["claims"] += 1
        r["cost_fen"] += int(record.result.get("cost_fen", 0))
        r["subsidy_fen"] += record.net_fen
        r["total_fen"] += record.net_fen
        r["by_programme"][key] = r["by_programme"].get(key, 0) + record.net_fen
    for grant in grants:
        r = rows[_month(grant.at) - 1]
        key = f"{grant.round}/{grant.programme}"
        r["grants_fen"] += grant.net_fen
        r["total_fen"] += grant.net_fen
        r["by_programme"][key] = r["by_programme"].get(key, 0) + grant.net_fen
    return {"size": state.size, "year": year, "months": rows, "totals": _totals(rows)}


# --- tables for the exports ----------------------------------------------------------------

Y = exports.Column


def _budget_table(report: dict[str, Any]) -> exports.Table:
    kinds = {"programme": "项目", "pool": "资金池"}
    rows = report["pools"] + report["programmes"]
    return exports.Table(
        "预算执行",
        (
            Y("类别", lambda r: kinds.get(r["kind"], r["kind"]), width=8),
            Y("编号", "id", width=20),
            Y("名称", "label", width=36),
            Y("年度", "period", width=8),
            Y("额度(元)", "limit_fen", "yuan", 18),
            Y("已使用(元)", "used_fen", "yuan", 18),
            Y("冻结中(元)", "held_fen", "yuan", 16),
            Y("剩余(元)", "remaining_fen", "yuan", 18),
        ),
        rows,
        notes=[("预算年度", report["year"]), ("日志长度", report["size"])],
    )


_MONEY = (
    Y("补贴笔数", "claims", "int", 10),
    Y("算力费用(元)", "cost_fen", "yuan", 18),
    Y("补贴金额(元)", "subsidy_fen", "yuan", 18),
)


def _entity_table(report: dict[str, Any]) -> exports.Table:
    return exports.Table(
        "按单位",
        (
            Y("统一社会信用代码", "uscc", width=22),
            Y("单位名称", "name", width=30),
            Y("区县", "district", width=14),
            Y("凭证数", "vouchers", "int", 8),
            Y("凭证面值(元)", "face_value_fen", "yuan", 18),
            Y("凭证余额(元)", "balance_fen", "yuan", 18),
            *_MONEY,
            Y("一次性奖补(元)", "grants_fen", "yuan", 18),
            Y("合计(元)", "total_fen", "yuan", 18),
        ),
        report["entities"],
        total=report["totals"],
        notes=[("预算年度", report["year"]), ("日志长度", report["size"])],
    )


def _centre_table(report: dict[str, Any]) -> exports.Table:
    return exports.Table(
        "按计算中心",
        (
            Y("计算中心", "centre", width=12),
            Y("名称", "name", width=24),
            *_MONEY,
            Y("累计补贴(元)", "granted_fen", "yuan", 18),
            Y("已结算(元)", "settled_fen", "yuan", 18),
            Y("待结算(元)", "due_fen", "yuan", 18),
            Y("结算单数", "statements", "int", 10),
        ),
        report["centres"],
        total=report["totals"],
        notes=[("预算年度", report["year"]), ("日志长度", report["size"])],
    )


def _month_table(report: dict[str, Any]) -> exports.Table:
    return exports.Table(
        "按月",
        (
            Y("月份", "month", width=10),
            *_MONEY,
            Y("一次性奖补(元)", "grants_fen", "yuan", 18),
            Y("合计(元)", "total_fen", "yuan", 18),
        ),
        report["months"],
        total=report["totals"],
        notes=[("预算年度", report["year"]), ("日志长度", report["size"])],
    )


REPORTS: dict[
    str, tuple[Callable[..., dict[str, Any]], Callable[[dict[str, Any]], exports.Table]]
] = {
    "budget": (budget_report, _budget_table),
    "entities": (entity_report, _entity_table),
    "centres": (centre_report, _centre_table),
    "months": (month_report, _month_table),
}


def _run(request: Request, name: str, year: int | None) -> dict[str, Any]:
    compute, _ = REPORTS[name]
    with reading(request) as (state, now):
        chosen = year if year is not None else _year(now)
        if name == "budget":
            return compute(state, chosen, now)
        return compute(state, chosen)


# --- routes ------------------------------------------------------------------------------------


@router.get("/budget", response_model=Budget)
def budget(request: Request, year: YearQuery = None) -> dict[str, Any]:
    """Budget used and remaining per programme and per pool, for a budget year."""
    return _run(request, "budget", year)


@router.get("/entities", response_model=EntityReport)
def entities(request: Request, year: YearQuery = None) -> dict[str, Any]:
    """Per entity: claims, cost, subsidy and grants paid in the year; its vouchers."""
    return _run(request, "entities", year)


@router.get("/centres", response_model=CentreReport)
def centres(request: Request, year: YearQuery = None) -> dict[str, Any]:
    """Per centre: claims paid in the year; what has been settled and what is due."""
    return _run(request, "centres", year)


@router.get("/months", response_model=MonthReport)
def months(request: Request, year: YearQuery = None) -> dict[str, Any]:
    """Per month of the year: claims, cost, subsidy, grants, and totals by programme."""
    return _run(request, "months", year)


@router.get("/report.xlsx", response_class=Response, responses=XLSX_RESPONSE)
def workbook(request: Request, year: YearQuery = None) -> Response:
    """All four reports as one workbook (预算执行, 按单位, 按计算中心, 按月)."""
    tables = [table(_run(request, name, year)) for name, (_, table) in REPORTS.items()]
    return download(exports.to_xlsx(tables), exports.XLSX_MEDIA_TYPE, "bureau-report.xlsx")


ReportName = Annotated[str, Path(pattern=r"^(budget|entities|centres|months)$")]


@router.get(
    "/{report}.csv", response_class=Response, responses={**CSV_RESPONSE, **problem_responses(404)}
)
def report_csv(request: Request, report: ReportName, year: YearQuery = None) -> Response:
    """One report as CSV: budget, entities, centres or months."""
    if report not in REPORTS:
        raise NotFound(f"no report {report!r}", reason="UNKNOWN_REPORT")
    answer = _run(request, report, year)
    content = exports.to_csv(REPORTS[report][1](answer))
    return download(content, exports.CSV_MEDIA_TYPE, f"{report}-{answer['year']}.csv")


@router.get(
    "/{report}.xlsx", response_class=Response, responses={**XLSX_RESPONSE, **problem_responses(404)}
)
def report_xlsx(request: Request, report: ReportName, year: YearQuery = None) -> Response:
    """One report as an XLSX workbook."""
    if report not in REPORTS:
        raise NotFound(f"no report {report!r}", reason="UNKNOWN_REPORT")
    answer = _run(request, report, year)
    content = exports.to_xlsx([REPORTS[report][1](answer)])
    return download(content, exports.XLSX_MEDIA_TYPE, f"{report}-{answer['year']}.xlsx")
