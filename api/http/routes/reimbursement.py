"""Post-hoc reimbursement (model B, 事后奖补) over HTTP (docs/reimbursement.md).

* the grantee (``/v1/apply/reimbursements``): submits a claim for its own entity — the
  provider, the period, the amount paid, each invoice and the contract and payment
  evidence as SHA-256 hashes its client computed (the server stores no document) — and
  follows its claims;
* the district reviewer (``/v1/review/reimbursements``): its own 区县's claims, and its
  opinion on one;
* the bureau (``/v1/bureau/reimbursements``, role admin; auditors read): the queue, the
  decision (the caps may cut an approval, to the fen, naming the cap) and the payment.

Every list pages as every list does (``api.http.paging``): ``cursor`` (the last item's log
index; ``after`` is read too) and ``limit``; ``next_cursor`` and ``Link: rel="next"``.
Each route calls one use case; refusals are problem+json with the domain's reason
(``DUPLICATE_INVOICE``, ``ALREADY_SUBSIDISED``, ``RELATED_PARTY``, ``CAP_EXHAUSTED`` …).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from api.errors import problem_responses
from api.http.auth import check_district, check_entity, require
from api.http.deps import new_id, own_entity, reading, reviewer_district, service_of
from api.http.paging import PageRequest, Paging, link_next
from api.http.schemas import Fen, Id, IdPath, Opinion, Recorded, Sha256
from ledger import reimbursement
from ledger.store.tokens import Principal
from ledger.usecases.commands.reimbursement import (
    decide_reimbursement,
    pay_reimbursement,
    review_reimbursement,
    submit_reimbursement,
)
from ledger.usecases.views.reimbursement import reimbursement_page

_STRICT = ConfigDict(extra="forbid", strict=True)
Uscc = Annotated[StrictStr, Field(min_length=18, max_length=18, description="统一社会信用代码")]
Day = Annotated[StrictStr, Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD")]
ClaimStatus = Literal["submitted", "reviewed", "approved", "rejected", "paid"]
WRITE_ERRORS = problem_responses(409, 422)

Grantee = Annotated[Principal, Depends(require("grantee"))]
Reviewer = Annotated[Principal, Depends(require("reviewer"))]
Bureau = Annotated[Principal, Depends(require("admin"))]
BureauOrAuditor = Annotated[Principal, Depends(require("admin", "auditor"))]

grantee_router = APIRouter(
    prefix="/v1/apply/reimbursements",
    tags=["reimbursement"],
    responses=problem_responses(400, 401, 403, 404),
)
review_router = APIRouter(
    prefix="/v1/review/reimbursements",
    tags=["reimbursement"],
    responses=problem_responses(400, 401, 403, 404),
)
bureau_router = APIRouter(
    prefix="/v1/bureau/reimbursements",
    tags=["reimbursement"],
    responses=problem_responses(400, 401, 403, 404),
)
ROUTERS = (grantee_router, review_router, bureau_router)


# --- bodies and answers -----------------------------------------------------------------------


class ProviderIn(BaseModel):
    model_config = _STRICT
    name: StrictStr = Field(min_length=1, max_length=200)
    uscc: Uscc
    centre: Id | None = Field(default=None, description="the registered centre id, if one")


class PeriodIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)
    from_: Day = Field(alias="from")
    to: Day


class InvoiceIn(BaseModel):
    model_config = _STRICT
    number: StrictStr = Field(min_length=1, max_length=40, description="发票号码")
    issuer: Uscc = Field(description="the seller's 统一社会信用代码")
    amount_fen: Fen
    sha256: Sha256


class ClaimIn(BaseModel):
    """A reimbursement claim; every document as its SHA-256 (``sha256sum FILE``)."""

    model_config = _STRICT
    claim: Id | None = Field(default=None, description="default: a fresh R- id")
    round: Id
    programme: Id
    provider: ProviderIn
    period: PeriodIn
    amount_paid_fen: Fen
    invoices: list[InvoiceIn] = Field(min_length=1, max_length=reimbursement.MAX_INVOICES)
    evidence: dict[str, Sha256] = Field(description="contract and payment: their SHA-256")
    related_parties: list[Uscc] = Field(default=[], max_length=reimbursement.MAX_RELATED)


class OpinionIn(BaseModel):
    model_config = _STRICT
    opinion: Opinion
    note: StrictStr = Field(default="", max_length=2000)


class DecisionIn(BaseModel):
    model_config = _STRICT
    decision: Opinion
    amount_fen: Fen | None = Field(
        default=None, description="approve only; default the entitlement"
    )
    note: StrictStr = Field(default="", max_length=2000)


class ClaimRecorded(BaseModel):
    """The entry a write appended and the fold's answer (amounts, the cap that bound)."""

    entry: Recorded
    result: dict[str, Any]


class ClaimPage(BaseModel):
    count: int
    items: list[dict[str, Any]]
    next_after: int | None = Field(description="the next page's cursor as a log index")
    next_cursor: str | None = Field(description="pass as cursor= for the next page; null: last")


def _paged(request: Request, response: Response, paging: PageRequest, **chosen: Any) -> ClaimPage:
    """One page of the claims ``chosen`` selects (claimant, district, status, round,
    programme), with its next cursor and ``Link``."""
    with reading(request) as snapshot:
        page = reimbursement_page(
            snapshot.state, after=paging.after_index(-1), limit=paging.limit, **chosen
        )
    following = page["next_after"]
    page["next_cursor"] = None if following is None else str(following)
    link_next(request, response, page["next_cursor"])
    return ClaimPage.model_validate(page)


def _recorded(done: Any) -> ClaimRecorded:
    return ClaimRecorded(entry=Recorded.of(done), result=dict(done.result))


def _one(request: Request, claim: str) -> dict[str, Any]:
    with reading(request) as snapshot:
        return reimbursement.claim_view(snapshot.state, claim)


# --- the grantee ------------------------------------------------------------------------------


@grantee_router.post("", status_code=201, response_model=ClaimRecorded, responses=WRITE_ERRORS)
def submit(request: Request, body: ClaimIn, principal: Grantee) -> ClaimRecorded:
    """Claim reimbursement as the token's entity, inside the round's submission window."""
    done = service_of(request).write(
        submit_reimbursement,
        claim=body.claim or new_id("R"),
        round=body.round,
        programme=body.programme,
        claimant=own_entity(principal),
        provider=body.provider.model_dump(exclude_none=True),
        period=(body.period.from_, body.period.to),
        amount_paid_fen=body.amount_paid_fen,
        invoices=[i.model_dump() for i in body.invoices],
        evidence=body.evidence,
        related_parties=body.related_parties,
    )
    return _recorded(done)


@grantee_router.get("", response_model=ClaimPage)
def my_claims(
    request: Request,
    principal: Grantee,
    response: Response,
    paging: Paging,
    status: Annotated[ClaimStatus | None, Query()] = None,
) -> ClaimPage:
    """The token's entity's claims, in log order, one page."""
    claimant = own_entity(principal)
    return _paged(request, response, paging, claimant=claimant, status=status)


@grantee_router.get("/{claim}")
def my_claim(request: Request, claim: IdPath, principal: Grantee) -> dict[str, Any]:
    """One of the entity's own claims (403 NOT_YOUR_ENTITY for another's)."""
    own_entity(principal)
    found = _one(request, claim)
    check_entity(principal, found["claimant"])
    return found


# --- the district -----------------------------------------------------------------------------


@review_router.get("", response_model=ClaimPage)
def district_claims(
    request: Request,
    principal: Reviewer,
    response: Response,
    paging: Paging,
    status: Annotated[ClaimStatus | None, Query(description="submitted: to review")] = None,
) -> ClaimPage:
    """The claims of this reviewer's 区县, in log order, one page."""
    district = reviewer_district(principal)
    return _paged(request, response, paging, district=district, status=status)


@review_router.post(
    "/{claim}/opinion", status_code=201, response_model=ClaimRecorded, responses=WRITE_ERRORS
)
def give_opinion(
    request: Request, claim: IdPath, body: OpinionIn, principal: Reviewer
) -> ClaimRecorded:
    """The district's opinion on a claim of its own 区县 (another's: 403)."""
    district = reviewer_district(principal)
    check_district(principal, _one(request, claim)["district"])
    done = service_of(request).write(
        review_reimbursement,
        claim=claim,
        district=district,
        reviewer=principal.token_id,
        opinion=body.opinion,
        note=body.note,
    )
    return _recorded(done)


# --- the bureau -------------------------------------------------------------------------------


@bureau_router.get("", response_model=ClaimPage)
def queue(
    request: Request,
    _: BureauOrAuditor,
    response: Response,
    paging: Paging,
    status: Annotated[ClaimStatus | None, Query(description="reviewed: to decide")] = None,
    round: Annotated[str | None, Query(max_length=64)] = None,
    programme: Annotated[str | None, Query(max_length=64)] = None,
) -> ClaimPage:
    """Every claim, filtered, in log order, one page."""
    return _paged(request, response, paging, status=status, round=round, programme=programme)


@bureau_router.get("/{claim}")
def one_claim(request: Request, claim: IdPath, _: BureauOrAuditor) -> dict[str, Any]:
    """One claim with its review, decision and payment."""
    return _one(request, claim)


@bureau_router.post(
    "/{claim}/decision", status_code=201, response_model=ClaimRecorded, responses=WRITE_ERRORS
)
def decide(request: Request, claim: IdPath, body: DecisionIn, _: Bureau) -> ClaimRecorded:
    """Approve (the caps may cut the amount, naming the cap) or reject a reviewed claim."""
    done = service_of(request).write(
        decide_reimbursement,
        claim=claim,
        decision=body.decision,
        amount_fen=body.amount_fen,
        note=body.note,
    )
    return _recorded(done)


@bureau_router.post(
    "/{claim}/payment", status_code=201, response_model=ClaimRecorded, responses=WRITE_ERRORS
)
def pay(request: Request, claim: IdPath, _: Bureau) -> ClaimRecorded:
    """Record the payment of an approved claim (its approved amount, once)."""
    return _recorded(service_of(request).write(pay_reimbursement, claim=claim))
