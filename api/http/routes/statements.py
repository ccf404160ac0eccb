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

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from api import exports
from api.auth import bearer, check_centre, require
from api.errors import problem_responses
from api.routes_grantee import (
    CSV_RESPONSE,
    XLSX_RESPONSE,
    download,
    proof_link,
    reading,
    service_of,
)
from ledger import entities as entities_mod
from ledger import settlement
from ledger.entry import Entry
from ledger.errors import LedgerError, NotFound
from ledger.policy import current_policy
from ledger.state import LedgerState
from ledger.store.tokens import Principal
from ledger.store.unit_of_work import Appended, Transaction
from ledger.timeutil import SHANGHAI, format_time, parse_time

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
    record_id: str
    claim_index: int = Field(description="the log index of the claim or capture")
    kind: str = Field(description="claim or capture")
    voucher: str
    round: str
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
    lines: int
    cost_fen: int
    amount_fen: int


class VoucherTotal(BaseModel):
    voucher: str
    holder: str
    round: str
    programme: str
    lines: int
    cost_fen: int
    amount_fen: int


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


# --- helpers ---------------------------------------------------------------------------------


def _with_proofs(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "lines": [{**x, "proof": proof_link(x["claim_index"])} for x in body["lines"]]}


def statement_out(state: LedgerState, statement: str) -> dict[str, Any]:
    view = settlement.statement_view(state, statement)
    return {
        **_with_proofs(view),
        "proof": proof_link(view["index"]),
        "entry": f"/v1/log/entries/{view['index']}",
    }


def _check(principal: Principal, centre: str) -> None:
    check_centre(principal, centre)


def _found(state: LedgerState, principal: Principal, statement: str) -> dict[str, Any]:
    found = settlement.book(state).statements.get(statement)
    if found is None:
        raise NotFound(
            f"no settlement statement {statement!r}",
            reason="UNKNOWN_STATEMENT",
            details={"statement_id": statement},
        )
    _check(principal, found.centre)
    return statement_out(state, statement)


def _beijing(text: str) -> str:
    return parse_time(text).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def statement_tables(state: LedgerState, view: dict[str, Any]) -> list[exports.Table]:
    """The statement as tables: lines, totals by programme, by voucher, and its facts."""
    people = entities_mod.book(state).entities

    def name(uscc: str) -> str:
        found = people.get(uscc)
        return found.name if found else ""

    def label(round_id: str, programme: str) -> str:
        try:
            p = current_policy(state, round_id).programmes.get(programme)
        except NotFound:
            p = None
        return f"({p.number}) {p.title}" if p else programme

    kind_text = {"claim": "结算", "adjustment": "冲回调整"}
    line_cols = (
        exports.Column("序号", "line", "int", 6),
        exports.Column("类型", lambda r: kind_text.get(r["type"], r["type"]), width=10),
        exports.Column("凭证编号", "voucher", width=18),
        exports.Column("持券单位", lambda r: name(r["holder"]), width=28),
        exports.Column("统一社会信用代码", "holder", width=22),
        exports.Column("项目", lambda r: label(r["round"], r["programme"]), width=28),
        exports.Column("作业编号", "record_id", width=20),
        exports.Column("记账时间", lambda r: _beijing(r["captured_at"]), width=20),
        exports.Column("算力费用(元)", "cost_fen", "yuan", 16),
        exports.Column("补贴金额(元)", "amount_fen", "yuan", 16),
        exports.Column("日志索引", "claim_index", "int", 10),
    )
    totals = view["totals"]
    programme_cols: tuple[exports.Column, ...] = (
        exports.Column(
            "项目",
            lambda r: label(r["round"], r["programme"]) if r.get("round") else "合计",
            width=32,
        ),
        exports.Column("项目编号", "programme", width=18),
        exports.Column("行数", "lines", "int", 8),
        exports.Column("算力费用(元)", "cost_fen", "yuan", 16),
        exports.Column("补贴金额(元)", "amount_fen", "yuan", 16),
    )
    voucher_cols: tuple[exports.Column, ...] = (
        exports.Column("凭证编号", lambda r: r.get("voucher", "合计"), width=18),
        exports.Column(
            "持券单位", lambda r: name(r["holder"]) if r.get("holder") else "", width=28
        ),
        exports.Column("统一社会信用代码", "holder", width=22),
        exports.Column(
            "项目", lambda r: label(r["round"], r["programme"]) if r.get("round") else "", width=28
        ),
        exports.Column("行数", "lines", "int", 8),
        exports.Column("算力费用(元)", "cost_fen", "yuan", 16),
        exports.Column("补贴金额(元)", "amount_fen", "yuan", 16),
    )
    overall = {
        "lines": totals["lines"],
        "cost_fen": totals["cost_fen"],
        "amount_fen": totals["amount_fen"],
    }
    facts: list[tuple[str, Any]] = [
        ("结算单编号", view["statement"] or "(未出具 pending)"),
        ("计算中心", view["centre"]),
        ("结算期间", view["period"]),
        ("期间起", _beijing(view["period_start"])),
        ("期间止(不含)", _beijing(view["period_end"])),
        ("同期序号", view["sequence"]),
        ("上一结算单", view["previous"] or ""),
        ("日志索引", view["index"] if view["index"] is not None else ""),
        ("记录时间", _beijing(view["at"]) if view["at"] else ""),
        ("签名密钥", ", ".join(view["signed_by"])),
        ("结算行数", totals["lines"]),
        ("其中冲回调整", totals["adjustments"]),
        ("算力费用合计(分)", totals["cost_fen"]),
        ("补贴金额合计(分)", totals["amount_fen"]),
        ("补贴金额合计(元)", exports.yuan_decimal(totals["amount_fen"])),
        ("包含证明", view["proof"] or ""),
    ]
    return [
        exports.Table("结算明细", line_cols, view["lines"], total=overall),
        exports.Table("按项目汇总", programme_cols, totals["by_programme"], total=overall),
        exports.Table("按凭证汇总", voucher_cols, totals["by_voucher"], total=overall),
        exports.Table(
            "结算单信息",
            (exports.Column("项", "k", width=20), exports.Column("值", "v", "auto", 60)),
            [{"k": k, "v": v} for k, v in facts],
        ),
    ]


# --- routes ----------------------------------------------------------------------------------


@router.get("", response_model=StatementList)
def list_statements(
    request: Request, principal: Reader, centre: CentreQuery = None, period: PeriodQuery = None
) -> dict[str, Any]:
    """Statements in log order (a centre token: its own centre's only)."""
    if principal.role == "centre":
        if centre is not None:
            _check(principal, centre)
        centre = principal.centre or ""
    with reading(request) as (state, _now):
        listed = settlement.statements_of(state, centre, period)
        return {
            "size": state.size,
            "statements": [{**s, "proof": proof_link(s["index"])} for s in listed],
        }


@router.get("/pending", response_model=StatementOut, responses=problem_responses(422))
def pending(
    request: Request,
    principal: Reader,
    centre: Annotated[str, Query(pattern=CENTRE_PATTERN)],
    period: Annotated[str, Query(description="2023-09, 2023-Q3 or 2023", pattern=PERIOD_PATTERN)],
) -> dict[str, Any]:
    """What a statement for ``centre`` and ``period`` would hold if it were issued now
    (``lines`` empty when there is nothing to settle). Nothing is recorded."""
    _check(principal, centre)
    with reading(request) as (state, now):
        try:
            body = settlement.statement_body(state, centre=centre, period=period, at=now)
        except LedgerError as exc:
            if exc.reason != "NOTHING_TO_SETTLE":
                raise
            found = settlement.parse_period(period)
            taken = settlement.book(state).sequences.get((centre, found.text), 0)
            previous = settlement.book(state).by_centre.get(centre, [])
            body = {
                "statement": None,
                "centre": centre,
                "period": found.text,
                "cadence": found.cadence,
                "period_start": format_time(found.start),
                "period_end": format_time(found.end),
                "sequence": taken + 1,
                "previous": previous[-1] if previous else None,
                "lines": [],
                "totals": settlement.totals_of([]),
            }
        return {
            **_with_proofs({**body, "statement": None}),
            "index": None,
            "at": None,
            "signed_by": [],
            "proof": None,
            "entry": None,
        }


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
    service = service_of(request)

    def work(tx: Transaction) -> Appended:
        ledger = tx.ledger
        moment = ledger.clock()
        if tx.state.time is not None and tx.state.time > moment:
            moment = tx.state.time
        body = settlement.statement_body(
            tx.state, centre=order.centre, period=order.period, at=moment
        )
        entry = Entry("statement.issue", format_time(moment), body).signed(ledger.keys.log)
        return tx.append(entry)

    appended: Appended = service.sequencer.call(work)
    with reading(request) as (state, _now):
        return statement_out(state, appended.result["statement"])


def _file(
    request: Request,
    principal: Principal,
    statement: str,
    render: Callable[[list[exports.Table]], bytes],
    media: str,
    suffix: str,
) -> Response:
    with reading(request) as (state, _now):
        view = _found(state, principal, statement)
        tables = statement_tables(state, view)
    return download(render(tables), media, f"statement-{statement}.{suffix}")


@router.get("/{statement}.csv", response_class=Response, responses=CSV_RESPONSE)
def statement_csv(request: Request, principal: Reader, statement: StatementPath) -> Response:
    """The statement's lines as CSV (UTF-8 with BOM), with a 合计 row."""
    return _file(
        request, principal, statement, lambda t: exports.to_csv(t[0]), exports.CSV_MEDIA_TYPE, "csv"
    )


@router.get("/{statement}.xlsx", response_class=Response, responses=XLSX_RESPONSE)
def statement_xlsx(request: Request, principal: Reader, statement: StatementPath) -> Response:
    """The statement as a workbook: 结算明细, 按项目汇总, 按凭证汇总, 结算单信息."""
    return _file(request, principal, statement, exports.to_xlsx, exports.XLSX_MEDIA_TYPE, "xlsx")


@router.get("/{statement}", response_model=StatementOut)
def get_statement(request: Request, principal: Reader, statement: StatementPath) -> dict[str, Any]:
    """One statement as recorded, with its log index, signers and inclusion proof."""
    with reading(request) as (state, _now):
        return _found(state, principal, statement)
