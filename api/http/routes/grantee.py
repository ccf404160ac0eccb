"""The grantee's API: my vouchers, balances, every remaining cap, and my history.

``/v1/me/...`` answers for the entity of the grantee token (role ``grantee``).
``/v1/entities/{uscc}/...`` answers the same for any entity to ``auditor`` and ``admin``
tokens, and to a grantee for its own entity only (any other: 403 ``NOT_YOUR_ENTITY``).
Everything is read from the fold of the committed log and changes nothing; the views are
``ledger.usecases.views.entities`` and ``.history``, their shapes documented in
``docs/api-grantee.md`` (the web page reads them).

* ``GET …/vouchers``: each voucher with its balance and what remains under each of its
  caps; every cap that applies to the entity by name; and which cap bound its last claim.
* ``GET …/vouchers/{voucher}``: one voucher, its caps and its claims.
* ``GET …/history/summary``: overall totals of the (filtered) history and the same by
  usage month (a claim counts in the month its usage started), for charts.
* ``GET …/history`` (and ``.csv`` / ``.xlsx``): claims and captures, reversals,
  clawbacks and grants, each with its log index and a link to its inclusion proof,
  filtered by centre, voucher, period (month ``2023-09``, quarter ``2023-Q3``, year
  ``2023``) or a date range (``from``/``to``, Asia/Shanghai days, inclusive).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.errors import problem_responses
from api.http import exports
from api.http.auth import bearer, check_entity, require
from api.http.deps import entry_reader, own_entity, reading
from api.http.paging import PageInfo, PageRequest, link_next, page_query
from api.http.tables import HISTORY
from ledger.store.tokens import Principal
from ledger.uscc import validate as validate_uscc
from ledger.usecases.views import entities as entity_views
from ledger.usecases.views.history import HistoryFilter, history_page, history_summary

READ_ROLES = ("grantee", "auditor", "admin")
USCC_PATTERN = r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"

router = APIRouter(
    tags=["grantee"],
    dependencies=[Depends(bearer)],
    responses=problem_responses(400, 401, 403, 404),
)


# --- response models -------------------------------------------------------------------------


class CapOut(BaseModel):
    name: str = Field(
        description="the cap's counter key, e.g. voucher/V-1, "
        "programme_pool/chengdu-2023-31/ai-model/2023"
    )
    cap: str = Field(
        description="voucher, period, entity_programme, entity_round, scheme_entity, "
        "programme_pool, voucher_pool or scheme_pool (what a claim's bound_by names)"
    )
    scope: str = Field(description="voucher, period, programme, entity or pool")
    label: str = Field(description="the cap for people, Chinese")
    limit_fen: int
    used_fen: int = Field(
        description="counted: claims and grants (net), forfeits; "
        "entity-wide or pool-wide for shared caps"
    )
    held_fen: int = Field(description="open holds counted against it")
    remaining_fen: int = Field(description="limit - used - held, never below 0")
    binding: bool = Field(description="this cap bound the entity's last claim")
    vouchers: list[str] = Field(description="the entity's vouchers this cap applies to")


class EntityOut(BaseModel):
    uscc: str
    name: str | None = Field(description="null when the entity is not registered yet")
    type: str | None
    district: str | None
    blacklisted: bool


class VoucherOut(BaseModel):
    id: str
    application: str = Field(description="the application it was issued on")
    round: str
    programme: str
    programme_label: str = Field(description="the programme for people: (四) …")
    holder: str = Field(description="统一社会信用代码 of the holder")
    status: str = Field(description="active, suspended, revoked or expired")
    face_value_fen: int
    used_fen: int = Field(description="net subsidy paid on it, and forfeits of clawbacks")
    held_fen: int = Field(description="open holds")
    balance_fen: int = Field(description="face value - used - held")
    available_fen: int = Field(
        description="the most the next claim can get: the smallest "
        "remaining cap (the balance is one of them)"
    )
    rate_bp: int
    usage_start: str
    usage_end: str
    valid_from: str
    valid_until: str
    centres: list[str]
    caps: dict[str, int] = Field(description="remaining fen under each cap, by cap name")
    last_bound_by: str | None = Field(description="the cap (or 'rate') of its last claim")
    claims: int
    subsidy_fen: int = Field(description="net subsidy of its claims")
    log_index: int
    proof: str
    policy_version: str
    credential: str = Field(description="the voucher as a JWS (EdDSA) signed by the issuer")


class LastClaim(BaseModel):
    index: int
    at: str
    centre: str
    record_id: str
    voucher: str
    subsidy_fen: int
    bound_by: str = Field(description="the cap name, or 'rate' when no cap bound it")
    cap: str | None = Field(description="the key of the cap that bound it (CapOut.name)")
    proof: str


class Totals(BaseModel):
    face_value_fen: int = Field(description="of all its vouchers")
    used_fen: int = Field(description="used on them (net subsidy and forfeits)")
    held_fen: int = Field(description="open holds on them")
    balance_fen: int = Field(description="left on them")
    subsidy_fen: int = Field(description="net subsidy of all its claims")
    grants_fen: int = Field(description="net one-time grants paid to it")


class EntityVouchers(BaseModel):
    size: int = Field(description="the log size this answer was read at")
    as_of: str = Field(description="the time remaining caps are computed for")
    entity: EntityOut
    vouchers: list[VoucherOut]
    caps: list[CapOut]
    last_binding_cap: str | None = Field(
        description="CapOut.name of the cap that bound the last claim; null: none did"
    )
    last_claim: LastClaim | None
    totals: Totals


class HistoryItem(BaseModel):
    index: int = Field(description="the entry's log index")
    at: str = Field(description="the entry's time, RFC 3339 UTC")
    kind: str = Field(description="claim, capture, claim.reverse, clawback or grant.pay")
    centre: str | None
    voucher: str | None
    round: str
    programme: str
    record_id: str | None
    grant: str | None
    resource: str | None
    quantity: int | None
    usage_start: str | None
    usage_end: str | None
    cost_fen: int = Field(description="the usage's cost (claims; 0 for other kinds)")
    subsidy_fen: int = Field(
        description="the change to the subsidy: + a claim's or grant's amount as decided, "
        "- a reversal or clawback; their sum is the net subsidy"
    )
    net_fen: int | None = Field(description="claims and grants: net after later corrections")
    binding_cap: str | None = Field(description="claims and grants: the cap that bound it")
    statement: str | None = Field(description="claims: the statement that settled it")
    corrects: int | None = Field(description="corrections: the log index of the claim/grant")
    wanted_fen: int | None = Field(
        description="claims: cost x rate, what the rate alone would pay; more than "
        "subsidy_fen when binding_cap cut it"
    )
    proof: str = Field(description="its inclusion proof: /v1/log/proof/inclusion?index=N")


class HistoryTotals(BaseModel):
    items: int
    cost_fen: int
    subsidy_fen: int


class History(PageInfo):
    size: int
    uscc: str
    items: list[HistoryItem]
    totals: HistoryTotals = Field(description="page: over the items of this page only")
    overall_totals: HistoryTotals = Field(
        description="overall: over every item the filter keeps, on all pages"
    )
    next_after: int | None = Field(description="the same as next_cursor, as a number")


class SummaryTotals(HistoryTotals):
    uncovered_fen: int = Field(
        description="over the claims: cost x rate not paid because a cap bound the claim"
    )


class SummaryMonth(HistoryTotals):
    month: str = Field(
        description="YYYY-MM (Asia/Shanghai) of the usage start (claims and their "
        "corrections) or of the payment (grants)"
    )


class HistorySummary(BaseModel):
    size: int
    uscc: str
    totals: SummaryTotals = Field(description="overall: every item of the filtered history")
    months: list[SummaryMonth] = Field(description="the same by usage month, oldest first")


class VoucherDetail(VoucherOut):
    size: int
    cap_list: list[CapOut] = Field(description="every cap of this voucher, by name")
    claim_list: list[HistoryItem] = Field(description="its claims and their corrections")


# --- parameters ------------------------------------------------------------------------------


def history_filter(
    centre: Annotated[
        str | None,
        Query(description="only this centre's claims", pattern=r"^[a-z0-9][a-z0-9\-]{0,31}$"),
    ] = None,
    voucher: Annotated[
        str | None, Query(description="only this voucher", pattern=ID_PATTERN)
    ] = None,
    period: Annotated[
        str | None,
        Query(
            description="a month 2023-09, a quarter 2023-Q3 or a year 2023 (Asia/Shanghai)",
            pattern=r"^\d{4}(-(0[1-9]|1[0-2])|-Q[1-4])?$",
        ),
    ] = None,
    start: Annotated[
        date | None, Query(alias="from", description="first day (Asia/Shanghai), YYYY-MM-DD")
    ] = None,
    to: Annotated[date | None, Query(description="last day, inclusive, YYYY-MM-DD")] = None,
    basis: Annotated[
        Literal["recorded", "usage"],
        Query(description="filter claims by when they were recorded (default) or by usage start"),
    ] = "recorded",
) -> HistoryFilter:
    return HistoryFilter(centre, voucher, period, start, to, basis)


Filter = Annotated[HistoryFilter, Depends(history_filter)]
HistoryPaging = Annotated[
    PageRequest, Depends(page_query(default=1000, maximum=10000))
]  # the cursor: the log index of the last item already read
Grantee = Annotated[Principal, Depends(require("grantee"))]
Reader = Annotated[Principal, Depends(require(*READ_ROLES))]
UsccPath = Annotated[
    str, Path(description="统一社会信用代码 (18 characters)", pattern=USCC_PATTERN)
]
VoucherPath = Annotated[str, Path(pattern=ID_PATTERN)]
HISTORY_ERRORS = problem_responses(400, 401, 403)


def _entity_of(principal: Principal, uscc: str) -> str:
    check_entity(principal, uscc)
    return validate_uscc(uscc)  # a wrong check character is a 400, not an empty answer


# --- the answers, for /v1/me and /v1/entities/{uscc} alike -----------------------------------


def _vouchers(request: Request, uscc: str) -> dict[str, Any]:
    with reading(request) as snapshot:
        return entity_views.entity_vouchers(snapshot, uscc)


def _voucher(request: Request, uscc: str, voucher: str) -> dict[str, Any]:
    with reading(request) as snapshot:
        return entity_views.voucher_detail(snapshot, uscc, voucher, entry_reader(request))


def _history(
    request: Request, uscc: str, chosen: HistoryFilter, page: PageRequest | None = None
) -> dict[str, Any]:
    after, limit = (-1, None) if page is None else (page.after_index(-1), page.limit)
    with reading(request) as snapshot:
        answer = history_page(
            snapshot.state, uscc, entry_reader(request), chosen, after=after, limit=limit
        )
    next_cursor = None if answer["next_after"] is None else str(answer["next_after"])
    return {**answer, "next_cursor": next_cursor}


def _history_page(
    request: Request, response: Response, uscc: str, chosen: HistoryFilter, page: PageRequest
) -> dict[str, Any]:
    answer = _history(request, uscc, chosen, page)
    link_next(request, response, answer["next_cursor"])
    return answer


def _summary(request: Request, uscc: str, chosen: HistoryFilter) -> dict[str, Any]:
    with reading(request) as snapshot:
        return history_summary(snapshot.state, uscc, entry_reader(request), chosen)


def _history_file(request: Request, uscc: str, chosen: HistoryFilter) -> Response:
    """The history for people: the notice's programme labels and absolute proof links."""
    with reading(request) as snapshot:
        answer = history_page(snapshot.state, uscc, entry_reader(request), chosen)
        labels = {
            (i["round"], i["programme"]): entity_views.programme_label(
                snapshot.state, i["round"], i["programme"]
            )
            for i in answer["items"]
        }
    origin = str(request.base_url).rstrip("/")
    answer["items"] = [
        {
            **i,
            "programme_label": labels[(i["round"], i["programme"])],
            "proof": origin + i["proof"],
        }
        for i in answer["items"]
    ]
    table = HISTORY.table(answer)
    return exports.download([table], exports.format_of(request), f"history-{uscc}")


# /v1/me: the grantee's own entity ------------------------------------------------------------


@router.get("/v1/me/vouchers", response_model=EntityVouchers)
def my_vouchers(request: Request, principal: Grantee) -> dict[str, Any]:
    """My vouchers, balances, every remaining cap by name, and the cap that bound my last
    claim."""
    return _vouchers(request, own_entity(principal))


@router.get("/v1/me/vouchers/{voucher}", response_model=VoucherDetail)
def my_voucher(request: Request, principal: Grantee, voucher: VoucherPath) -> dict[str, Any]:
    """One of my vouchers: its balance, its caps and its claims."""
    return _voucher(request, own_entity(principal), voucher)


@router.get("/v1/me/history", response_model=History, responses=HISTORY_ERRORS)
def my_history(
    request: Request, response: Response, principal: Grantee, chosen: Filter, page: HistoryPaging
) -> dict[str, Any]:
    """My usage and subsidy history, each item with its log index and inclusion proof."""
    return _history_page(request, response, own_entity(principal), chosen, page)


@router.get("/v1/me/history/summary", response_model=HistorySummary, responses=HISTORY_ERRORS)
def my_history_summary(request: Request, principal: Grantee, chosen: Filter) -> dict[str, Any]:
    """Overall totals of my history and the same by usage month (not a page: all of it)."""
    return _summary(request, own_entity(principal), chosen)


@exports.file_routes(router, "/v1/me/history")
def my_history_file(request: Request, principal: Grantee, chosen: Filter) -> Response:
    """My history as CSV (Chinese headings, 元 with two decimals) or an XLSX workbook."""
    return _history_file(request, own_entity(principal), chosen)


# /v1/entities/{uscc}: auditors and the bureau (and a grantee for its own) --------------------


@router.get("/v1/entities/{uscc}/vouchers", response_model=EntityVouchers)
def entity_vouchers(request: Request, principal: Reader, uscc: UsccPath) -> dict[str, Any]:
    """An entity's vouchers, balances and caps (auditor, admin; a grantee: its own)."""
    return _vouchers(request, _entity_of(principal, uscc))


@router.get("/v1/entities/{uscc}/vouchers/{voucher}", response_model=VoucherDetail)
def entity_voucher(
    request: Request, principal: Reader, uscc: UsccPath, voucher: VoucherPath
) -> dict[str, Any]:
    """One voucher of an entity."""
    return _voucher(request, _entity_of(principal, uscc), voucher)


@router.get("/v1/entities/{uscc}/history", response_model=History, responses=HISTORY_ERRORS)
def entity_history(
    request: Request,
    response: Response,
    principal: Reader,
    uscc: UsccPath,
    chosen: Filter,
    page: HistoryPaging,
) -> dict[str, Any]:
    """An entity's usage and subsidy history."""
    return _history_page(request, response, _entity_of(principal, uscc), chosen, page)


@router.get(
    "/v1/entities/{uscc}/history/summary", response_model=HistorySummary, responses=HISTORY_ERRORS
)
def entity_history_summary(
    request: Request, principal: Reader, uscc: UsccPath, chosen: Filter
) -> dict[str, Any]:
    """An entity's overall history totals, and by usage month."""
    return _summary(request, _entity_of(principal, uscc), chosen)


@exports.file_routes(router, "/v1/entities/{uscc}/history")
def entity_history_file(
    request: Request, principal: Reader, uscc: UsccPath, chosen: Filter
) -> Response:
    """An entity's history as CSV or an XLSX workbook."""
    return _history_file(request, _entity_of(principal, uscc), chosen)
