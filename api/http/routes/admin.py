"""The city bureau's API (role ``admin``, the issuer): ``/v1/admin/...``; and the issuer's
public key, ``/v1/issuer/...`` (no token).

The bureau registers entities, blacklists them, decides applications, issues vouchers,
changes their status, pays one-time grants, reverses claims, claws subsidies back and
publishes policy versions. Each write calls one use case (``ledger.usecases.commands``)
through the service's sequencer; the domain decides, and its refusals come back as
problem+json with nothing written. Auditors may call every GET here (and the grant
calculator, which writes nothing).
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request

from api.errors import problem_responses
from api.http.auth import require
from api.http.deps import district_query, new_id, reading, service_of, yuan
from api.http.schemas import (
    ApplicationList,
    ApplicationOut,
    BlacklistIn,
    BlacklistOut,
    Calculated,
    CalculateIn,
    ClaimOut,
    ClawbackIn,
    ClawedBack,
    DecisionIn,
    DecisionRecorded,
    EntityIn,
    EntityList,
    EntityOut,
    EntityRegistered,
    ErasureIn,
    ErasureRecorded,
    GrantOut,
    GrantPaid,
    GrantPayIn,
    IdPath,
    IssueIn,
    Jwk,
    JwkSet,
    PolicyOut,
    PolicyPublished,
    Recorded,
    Reversed,
    ReverseIn,
    Status,
    UnblacklistIn,
    UnblacklistOut,
    UsccPath,
    VoucherIssued,
    VoucherList,
    VoucherOut,
    VoucherStatus,
    VoucherStatusIn,
    VoucherStatusOut,
    application_out,
    recorded,
    voucher_out,
)
from ledger import applications, claims, entities, grants, vouchers
from ledger.credential import issuer_jwk
from ledger.errors import InvalidInput
from ledger.policy import DEFAULT_POLICY, current_policy
from ledger.policy import book as policy_book
from ledger.store.tokens import Principal
from ledger.usecases.commands import corrections
from ledger.usecases.commands import entities as entity_commands
from ledger.usecases.commands import vouchers as voucher_commands
from ledger.usecases.commands.applications import decide_application, erase_application
from ledger.usecases.commands.round import publish_round
from ledger.usecases.views import applications as application_views
from ledger.usecases.views import entities as entity_views
from ledger.usecases.views import grants as grant_views
from ledger.usecases.views.vouchers import voucher_list

ADMIN_ROLES = ("admin",)
READ_ROLES = ("admin", "auditor")

Admin = Annotated[Principal, Depends(require(*ADMIN_ROLES))]
AdminOrAuditor = Annotated[Principal, Depends(require(*READ_ROLES))]

WRITE_ERRORS = problem_responses(400, 401, 403, 404, 409, 422)

router = APIRouter(
    prefix="/v1/admin", tags=["admin"], responses=problem_responses(400, 401, 403, 404)
)
issuer_router = APIRouter(prefix="/v1/issuer", tags=["issuer"])
created = partial(router.post, status_code=201, responses=WRITE_ERRORS)  # a write that adds


# --- entities ------------------------------------------------------------------------------


def register_entity(request: Request, body: EntityIn, *, by_issuer: bool) -> EntityRegistered:
    """Register an entity: signed by the issuer (the bureau) or the service (an applicant)."""
    service = service_of(request)
    done = service.write(
        entity_commands.register_entity,
        uscc=body.uscc,
        name=body.name,
        type=body.type,
        district=body.district,
        records=body.bad_records(),
        by_issuer=by_issuer,
    )
    with reading(request) as snapshot:
        view = entities.entity_view(snapshot.state, body.uscc)
    return EntityRegistered(entry=Recorded.of(done), entity=EntityOut.model_validate(view))


@created("/entities", response_model=EntityRegistered)
def admin_register_entity(request: Request, body: EntityIn, _: Admin) -> EntityRegistered:
    """Register an entity by its 统一社会信用代码 (a wrong GB 32100 check character, or any
    character not allowed, is refused naming the character)."""
    return register_entity(request, body, by_issuer=True)


@router.get("/entities", response_model=EntityList)
def list_entities(
    request: Request,
    _: AdminOrAuditor,
    district: Annotated[str | None, Query(max_length=50, description="only this 区县")] = None,
) -> EntityList:
    """Registered entities, optionally of one 区县."""
    wanted = district_query(district)
    with reading(request) as snapshot:
        found = entity_views.entity_list(snapshot.state, wanted)
    return EntityList(count=len(found), entities=[EntityOut.model_validate(e) for e in found])


@router.get("/entities/{uscc}", response_model=EntityOut)
def get_entity(request: Request, uscc: UsccPath, _: AdminOrAuditor) -> EntityOut:
    """One entity: its details, records and blacklisting."""
    with reading(request) as snapshot:
        return EntityOut.model_validate(entities.entity_view(snapshot.state, uscc))


@router.post("/entities/{uscc}/blacklist", response_model=BlacklistOut, responses=WRITE_ERRORS)
def blacklist(request: Request, uscc: UsccPath, body: BlacklistIn, _: Admin) -> BlacklistOut:
    """Blacklist an entity: every active voucher it holds is suspended, and new applications,
    approvals, issues and payments are refused."""
    done = service_of(request).write(
        entity_commands.blacklist_entity,
        uscc=uscc,
        reason=body.reason,
        evidence_sha256=body.evidence_sha256,
    )
    return recorded(BlacklistOut, done)


@router.post("/entities/{uscc}/unblacklist", response_model=UnblacklistOut, responses=WRITE_ERRORS)
def unblacklist(request: Request, uscc: UsccPath, body: UnblacklistIn, _: Admin) -> UnblacklistOut:
    """Lift a blacklisting; the vouchers it suspended are reinstated."""
    done = service_of(request).write(
        entity_commands.unblacklist_entity, uscc=uscc, reason=body.reason
    )
    return recorded(UnblacklistOut, done)


# --- applications --------------------------------------------------------------------------


@router.get("/applications", response_model=ApplicationList)
def list_applications(
    request: Request,
    _: AdminOrAuditor,
    programme: Annotated[str | None, Query(max_length=64, description="programme id")] = None,
    status: Annotated[Status | None, Query(description="submitted, reviewed, ...")] = None,
    district: Annotated[str | None, Query(max_length=50, description="区县")] = None,
    round: Annotated[str | None, Query(max_length=64, description="policy round")] = None,
) -> ApplicationList:
    """Applications in log order, filtered by programme, status, 区县 and round."""
    wanted = district_query(district)
    with reading(request) as snapshot:
        found = application_views.application_list(
            snapshot.state, programme=programme, status=status, district=wanted, round=round
        )
    return ApplicationList(count=len(found), applications=[application_out(a) for a in found])


@router.get("/applications/{application}", response_model=ApplicationOut)
def get_application(request: Request, application: IdPath, _: AdminOrAuditor) -> ApplicationOut:
    """One application: inputs, material hashes, the district's opinion, the decision."""
    with reading(request) as snapshot:
        return application_out(applications.application_view(snapshot.state, application))


@router.post(
    "/applications/{application}/decision",
    response_model=DecisionRecorded,
    responses=WRITE_ERRORS,
)
def decide(request: Request, application: IdPath, body: DecisionIn, _: Admin) -> DecisionRecorded:
    """Approve (with an amount, at most the entitlement; default: the entitlement) or reject.
    Approval needs a district opinion that approves."""
    if body.decision == "reject" and body.amount_fen is not None:
        raise InvalidInput("body.amount_fen: a rejection has no amount")
    done = service_of(request).write(
        decide_application,
        application=application,
        decision=body.decision,
        amount_fen=body.amount_fen,
        note=body.note,
    )
    return recorded(DecisionRecorded, done)


@router.post(
    "/applications/{application}/erasure",
    response_model=ErasureRecorded,
    responses=WRITE_ERRORS,
)
def erase(request: Request, application: IdPath, body: ErasureIn, _: Admin) -> ErasureRecorded:
    """Erase a rejected application's personal data (docs/publication.md, erasure): the
    disclosures of its entries are deleted; the log, its leaves and signatures stay, and an
    audit reports the entries as erased. Approved applications cannot be erased."""
    done = service_of(request).write(erase_application, application=application, reason=body.reason)
    return recorded(ErasureRecorded, done)


@created("/applications/{application}/voucher", response_model=VoucherIssued)
def issue_voucher(request: Request, application: IdPath, body: IssueIn, _: Admin) -> VoucherIssued:
    """Issue the voucher of an approved application: a compact JWS (EdDSA) signed by the
    issuer key, bound to its ``voucher.issue`` entry by the log index inside it."""
    done = service_of(request).write(
        voucher_commands.issue_voucher,
        application=application,
        voucher=body.voucher or new_id("V"),
        **body.terms(),
    )
    return recorded(VoucherIssued, done, **done.body)


@created("/applications/{application}/grant", response_model=GrantPaid)
def pay_grant(request: Request, application: IdPath, body: GrantPayIn, _: Admin) -> GrantPaid:
    """Pay the one-time grant of an approved (一)/(二)/(七) application: the approved amount
    (at most what the programme's calculator gives for the application's inputs), within
    every remaining cap; the answer names the cap that bound it."""
    paid = service_of(request).write(
        voucher_commands.pay_grant, application=application, grant=body.grant or new_id("G")
    )
    return recorded(GrantPaid, paid.entry, calculated_fen=paid.calculated_fen)


# --- vouchers ------------------------------------------------------------------------------


@router.get("/vouchers", response_model=VoucherList)
def list_vouchers(
    request: Request,
    _: AdminOrAuditor,
    holder: Annotated[str | None, Query(max_length=64, description="统一社会信用代码")] = None,
    programme: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[VoucherStatus | None, Query()] = None,
) -> VoucherList:
    """Vouchers in issue order, with balances and remaining caps, filtered."""
    with reading(request) as snapshot:
        found = voucher_list(snapshot, holder=holder, programme=programme, status=status)
    return VoucherList(count=len(found), vouchers=[voucher_out(v) for v in found])


@router.get("/vouchers/{voucher}", response_model=VoucherOut)
def get_voucher(request: Request, voucher: IdPath, _: AdminOrAuditor) -> VoucherOut:
    """One voucher: status, balance, every remaining cap, its credential and history."""
    with reading(request) as snapshot:
        return voucher_out(vouchers.voucher_view(snapshot.state, voucher, snapshot.now))


VOUCHER_ACTIONS = {
    "suspend": "Suspend a voucher (claims on it are refused until it is reinstated).",
    "reinstate": "Reinstate a suspended voucher (not while its holder is blacklisted).",
    "revoke": "Revoke a voucher for good; its open holds are voided.",
    "expire": "Record the expiry of a voucher past its validity; its open holds are voided.",
}
assert tuple(VOUCHER_ACTIONS) == voucher_commands.VOUCHER_ACTIONS


def _status_route(action: str, summary: str) -> None:
    def change(
        request: Request, voucher: IdPath, body: VoucherStatusIn, _: Admin
    ) -> VoucherStatusOut:
        done = service_of(request).write(
            voucher_commands.change_voucher_status,
            voucher=voucher,
            action=action,
            reason=body.reason,
            evidence_sha256=body.evidence_sha256,
        )
        return recorded(VoucherStatusOut, done)

    change.__doc__ = summary
    router.add_api_route(
        f"/vouchers/{{voucher}}/{action}",
        change,
        methods=["POST"],
        response_model=VoucherStatusOut,
        responses=WRITE_ERRORS,
        name=f"voucher_{action}",
        operation_id=f"voucher_{action}",
        summary=f"{action.capitalize()} a voucher",
    )


for _action, _summary in VOUCHER_ACTIONS.items():
    _status_route(_action, _summary)


# --- grants --------------------------------------------------------------------------------


@router.post("/grants/calculate", response_model=Calculated, responses=problem_responses(422))
def calculate_grant(request: Request, body: CalculateIn, _: AdminOrAuditor) -> Calculated:
    """What a one-time grant programme's calculator gives for these inputs (writes nothing):
    (一) rank → 100/75/50/25 万元; (二) racks in use × min(1000 元, 50 % of the average
    renovation cost per rack); (七) 30 % of the investment; each within the entity cap."""
    with reading(request) as snapshot:
        view = grant_views.calculate_grant(snapshot.state, body.programme, body.inputs)
    return Calculated.model_validate({**view, "amount_yuan": yuan(view["amount_fen"])})


@router.get("/grants/{grant}", response_model=GrantOut)
def get_grant(request: Request, grant: IdPath, _: AdminOrAuditor) -> GrantOut:
    """One grant: requested, paid, the cap that bound it, clawed back, net."""
    with reading(request) as snapshot:
        view = grants.grant_view(snapshot.state, grant)
    return GrantOut.model_validate({**view, "paid_yuan": yuan(view["paid_fen"])})


# --- claims and corrections ----------------------------------------------------------------


@router.get("/claims/{centre}/{record_id:path}", response_model=ClaimOut)
def get_claim(
    request: Request,
    centre: Annotated[str, Path(min_length=1, max_length=32)],
    record_id: Annotated[str, Path(min_length=1, max_length=128)],
    _: AdminOrAuditor,
) -> ClaimOut:
    """A centre's claim (or capture) by its usage record id: body, result, reversal, clawbacks."""
    with reading(request) as snapshot:
        view = claims.claim_view(snapshot.state, centre, record_id)
    return ClaimOut.model_validate({**view, "subsidy_yuan": yuan(view["subsidy_fen"])})


@created("/reversals", response_model=Reversed)
def reverse_claim(request: Request, body: ReverseIn, _: Admin) -> Reversed:
    """Reverse a wrong claim: every cap it counts against gets its amount back. The usage
    record id stays taken (never claimed twice)."""
    done = service_of(request).write(
        corrections.reverse_claim,
        centre=body.claim.centre,
        record_id=body.claim.record_id,
        reason=body.reason,
        evidence_sha256=body.evidence_sha256,
    )
    return recorded(Reversed, done)


@created("/clawbacks", response_model=ClawedBack)
def claw_back(request: Request, body: ClawbackIn, _: Admin) -> ClawedBack:
    """追回: recover part or all of a claim's or grant's subsidy, with the reason and the
    SHA-256 of the evidence. The amount returns to the budget but stays counted against
    the holder's caps."""
    target = body.target
    claim = None if target.claim is None else (target.claim.centre, target.claim.record_id)
    done = service_of(request).write(
        corrections.claw_back,
        amount_fen=body.amount_fen,
        reason=body.reason,
        evidence_sha256=body.evidence_sha256,
        claim=claim,
        grant=target.grant,
    )
    return recorded(ClawedBack, done)


# --- policy --------------------------------------------------------------------------------


@router.get("/policy", response_model=PolicyOut)
def get_policy(
    request: Request,
    _: AdminOrAuditor,
    round: Annotated[str, Query(max_length=64, description="policy round")] = DEFAULT_POLICY,
) -> PolicyOut:
    """The round's policy in force: the document, its version hash and where it was published."""
    with reading(request) as snapshot:
        policy = current_policy(snapshot.state, round)
        index = policy_book(snapshot.state).published_at[policy.version]
    return PolicyOut(
        round=policy.round, version=policy.version, published_index=index, policy=policy.to_json()
    )


@created("/policy", response_model=PolicyPublished)
def publish_policy(
    request: Request,
    _: Admin,
    document: Annotated[
        dict[str, Any],
        Body(description="a policy document (format suanli-policy/v1, docs/policy.md)"),
    ],
    supersedes: Annotated[
        str | None,
        Query(
            pattern="^[0-9a-f]{64}$",
            description="the version in force this one replaces: required to bring a "
            "version published before back into force",
        ),
    ] = None,
) -> PolicyPublished:
    """Publish a new policy version (it becomes the round's policy in force; later decisions
    cite it), with any centres and rate cards new in it. The document is validated as
    ``Policy.from_json`` reads a policy file: integers only, every figure checked."""
    published = service_of(request).write(publish_round, document, supersedes)
    return recorded(
        PolicyPublished,
        published.entry,
        centres_registered=published.centres,
        rate_cards_published=published.rate_cards,
    )


# --- the issuer's public key (no token) ----------------------------------------------------


@issuer_router.get("/jwk", response_model=Jwk)
def issuer_key(request: Request) -> Jwk:
    """The issuer key that signs vouchers now, as an RFC 8037 OKP JWK: with it alone, any
    JOSE library verifies a voucher credential (alg EdDSA)."""
    verifier = service_of(request).keys.issuer.verifier
    return Jwk.model_validate(issuer_jwk(verifier))


@issuer_router.get("/jwks", response_model=JwkSet)
def issuer_keys(request: Request) -> JwkSet:
    """Every issuer key the log has registered (current and retired), as a JWK Set: a
    credential's ``kid`` picks its key."""
    with reading(request) as snapshot:
        found = [
            Jwk.model_validate(issuer_jwk(key.verifier))
            for key in snapshot.state.registry.keys.values()
            if "issuer" in key.roles
        ]
    return JwkSet(keys=found)
