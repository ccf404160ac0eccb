"""The city bureau's API (role ``admin``, the issuer): ``/v1/admin/...``; and the issuer's
public key, ``/v1/issuer/...`` (no token).

The bureau registers entities, blacklists them, decides applications, issues vouchers,
changes their status, pays one-time grants, reverses claims, claws subsidies back and
publishes policy versions. Every write is one or more entries signed with the issuer key
and appended through the service's sequencer; the domain (``ledger/``) decides, and its
refusals come back as problem+json with nothing written. Auditors may call every GET here
(and the grant calculator, which writes nothing).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request

from api.auth import require
from api.errors import problem_responses
from api.schemas import (
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
    new_id,
    reading,
    service_of,
    voucher_out,
    write,
    yuan,
)
from ledger import applications, claims, corrections, entities, grants, vouchers
from ledger.credential import issuer_jwk
from ledger.entities import DISTRICTS, BadRecord
from ledger.errors import Conflict, InvalidInput, Refused
from ledger.policy import (
    DEFAULT_POLICY,
    Policy,
    Programme,
    Reader,
    current_policy,
    publish_body,
)
from ledger.policy import book as policy_book
from ledger.store.tokens import Principal
from ledger.store.unit_of_work import Appended, Transaction
from ledger.timeutil import parse_time
from ledger.uscc import validate as validate_uscc

ADMIN_ROLES = ("admin",)
READ_ROLES = ("admin", "auditor")

Admin = Annotated[Principal, Depends(require(*ADMIN_ROLES))]
AdminOrAuditor = Annotated[Principal, Depends(require(*READ_ROLES))]

WRITE_ERRORS = problem_responses(400, 401, 403, 404, 409, 422)

router = APIRouter(
    prefix="/v1/admin", tags=["admin"], responses=problem_responses(400, 401, 403, 404)
)
issuer_router = APIRouter(prefix="/v1/issuer", tags=["issuer"])


def _sign(tx: Transaction, kind: str, body: dict[str, Any]) -> Appended:
    """Append ``kind`` with ``body``, signed by the issuer key (the bureau's decisions)."""
    return tx.append(tx.sign(kind, body, tx.ledger.keys.issuer))


def _district(district: str | None) -> str | None:
    if district is not None and district not in DISTRICTS:
        raise InvalidInput(
            f"query.district: {district!r} is not a district; known: {', '.join(DISTRICTS)}"
        )
    return district


# --- entities ------------------------------------------------------------------------------


def _records(body: EntityIn) -> list[BadRecord]:
    out = []
    for i, record in enumerate(body.records):
        try:
            if len(record.date) != 10:
                raise ValueError(record.date)
            day = date.fromisoformat(record.date)
        except ValueError:
            raise InvalidInput(
                f"body.records[{i}].date: {record.date!r} is not a date YYYY-MM-DD"
            ) from None
        out.append(BadRecord(record.kind, day, record.ref))
    return out


def entity_body(body: EntityIn) -> dict[str, Any]:
    """The ``entity.register`` body, validated (the USCC's GB 32100 check character first)."""
    validate_uscc(body.uscc)
    return entities.register_body(body.uscc, body.name, body.type, body.district, _records(body))


def register_entity(request: Request, body: EntityIn, *, as_issuer: bool) -> EntityRegistered:
    """Register an entity: signed by the issuer (the bureau) or the service (an applicant)."""
    entry_body = entity_body(body)

    def work(tx: Transaction) -> tuple[Appended, dict[str, Any]]:
        keys = tx.ledger.keys
        signer = keys.issuer if as_issuer else keys.service
        done = tx.append(tx.sign("entity.register", entry_body, signer))
        return done, entities.entity_view(tx.state, body.uscc)

    done, view = write(request, work)
    return EntityRegistered(entry=Recorded.of(done), entity=EntityOut.model_validate(view))


@router.post("/entities", status_code=201, response_model=EntityRegistered, responses=WRITE_ERRORS)
def admin_register_entity(request: Request, body: EntityIn, _: Admin) -> EntityRegistered:
    """Register an entity by its 统一社会信用代码 (a wrong GB 32100 check character, or any
    character not allowed, is refused naming the character)."""
    return register_entity(request, body, as_issuer=True)


@router.get("/entities", response_model=EntityList)
def list_entities(
    request: Request,
    _: AdminOrAuditor,
    district: Annotated[str | None, Query(max_length=50, description="only this 区县")] = None,
) -> EntityList:
    """Registered entities, optionally of one 区县."""
    wanted = _district(district)
    with reading(request) as state:
        found = [
            EntityOut.model_validate(entities.entity_view(state, uscc))
            for uscc, entity in sorted(entities.book(state).entities.items())
            if wanted is None or entity.district == wanted
        ]
    return EntityList(count=len(found), entities=found)


@router.get("/entities/{uscc}", response_model=EntityOut)
def get_entity(request: Request, uscc: UsccPath, _: AdminOrAuditor) -> EntityOut:
    """One entity: its details, records and blacklisting."""
    with reading(request) as state:
        return EntityOut.model_validate(entities.entity_view(state, uscc))


@router.post("/entities/{uscc}/blacklist", response_model=BlacklistOut, responses=WRITE_ERRORS)
def blacklist(request: Request, uscc: UsccPath, body: BlacklistIn, _: Admin) -> BlacklistOut:
    """Blacklist an entity: every active voucher it holds is suspended, and new applications,
    approvals, issues and payments are refused."""
    entry_body = corrections.blacklist_body(
        uscc=uscc, reason=body.reason, evidence_sha256=body.evidence_sha256
    )
    done: Appended = write(request, lambda tx: _sign(tx, "entity.blacklist", entry_body))
    return BlacklistOut(
        entry=Recorded.of(done), uscc=uscc, suspended=list(done.result["suspended"])
    )


@router.post("/entities/{uscc}/unblacklist", response_model=UnblacklistOut, responses=WRITE_ERRORS)
def unblacklist(request: Request, uscc: UsccPath, body: UnblacklistIn, _: Admin) -> UnblacklistOut:
    """Lift a blacklisting; the vouchers it suspended are reinstated."""
    entry_body = corrections.unblacklist_body(uscc=uscc, reason=body.reason)
    done: Appended = write(request, lambda tx: _sign(tx, "entity.unblacklist", entry_body))
    return UnblacklistOut(
        entry=Recorded.of(done), uscc=uscc, reinstated=list(done.result["reinstated"])
    )


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
    wanted = _district(district)
    with reading(request) as state:
        found = [
            application_out(applications.application_view(state, app.id))
            for app in applications.book(state).applications.values()
            if (programme is None or app.programme == programme)
            and (status is None or app.status == status)
            and (wanted is None or app.district == wanted)
            and (round is None or app.round == round)
        ]
    return ApplicationList(count=len(found), applications=found)


@router.get("/applications/{application}", response_model=ApplicationOut)
def get_application(request: Request, application: IdPath, _: AdminOrAuditor) -> ApplicationOut:
    """One application: inputs, material hashes, the district's opinion, the decision."""
    with reading(request) as state:
        return application_out(applications.application_view(state, application))


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

    def work(tx: Transaction) -> Appended:
        app = applications.application_of(tx.state, application)
        policy = current_policy(tx.state, app.round)
        amount = body.amount_fen
        if body.decision == "approve" and amount is None:
            amount = policy.programme(app.programme).entitlement(app.inputs)
        entry_body = applications.decide_body(
            application=application,
            decision=body.decision,
            policy=policy,
            amount_fen=amount,
            note=body.note,
        )
        return _sign(tx, "application.decide", entry_body)

    done: Appended = write(request, work)
    result = done.result
    return DecisionRecorded(
        entry=Recorded.of(done),
        application=application,
        decision=result["decision"],
        amount_fen=result["amount_fen"],
        amount_yuan=yuan(result["amount_fen"]),
        entitlement_fen=result["entitlement_fen"],
        entitlement_yuan=yuan(result["entitlement_fen"]),
        policy_version=result["policy_version"],
    )


def _time(name: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        return parse_time(text)
    except InvalidInput as exc:
        raise InvalidInput(f"body.{name}: {exc.message}") from None


@router.post(
    "/applications/{application}/voucher",
    status_code=201,
    response_model=VoucherIssued,
    responses=WRITE_ERRORS,
)
def issue_voucher(request: Request, application: IdPath, body: IssueIn, _: Admin) -> VoucherIssued:
    """Issue the voucher of an approved application: a compact JWS (EdDSA) signed by the
    issuer key, bound to its ``voucher.issue`` entry by the log index inside it."""
    voucher_id = body.voucher or new_id("V")
    times = {
        name: _time(name, getattr(body, name))
        for name in ("usage_start", "usage_end", "valid_from", "valid_until")
    }

    def work(tx: Transaction) -> Appended:
        issuer = tx.ledger.keys.issuer
        entry_body = vouchers.issue_body(
            tx.state,
            application=application,
            voucher=voucher_id,
            issuer=issuer,
            log_index=tx.next_index,
            face_value_fen=body.face_value_fen,
            centres=body.centres,
            **times,
        )
        return tx.append(tx.sign("voucher.issue", entry_body, issuer))

    done: Appended = write(request, work)
    issued = done.entry.body
    return VoucherIssued(
        entry=Recorded.of(done),
        voucher=issued["voucher"],
        holder=issued["holder"],
        face_value_fen=issued["face_value_fen"],
        face_value_yuan=yuan(issued["face_value_fen"]),
        log_index=issued["log_index"],
        issuer_key=issued["issuer_key"],
        credential=issued["credential"],
    )


@router.post(
    "/applications/{application}/grant",
    status_code=201,
    response_model=GrantPaid,
    responses=WRITE_ERRORS,
)
def pay_grant(request: Request, application: IdPath, body: GrantPayIn, _: Admin) -> GrantPaid:
    """Pay the one-time grant of an approved (一)/(二)/(七) application: the approved amount
    (at most what the programme's calculator gives for the application's inputs), within
    every remaining cap; the answer names the cap that bound it."""
    grant_id = body.grant or new_id("G")

    def work(tx: Transaction) -> tuple[Appended, int]:
        app = applications.application_of(tx.state, application)
        policy = current_policy(tx.state, app.round)
        programme = policy.programme(app.programme)
        if programme.kind != "grant":
            raise Refused(
                f"{programme.label} is paid through vouchers and claims, not grants",
                reason="NOT_A_GRANT_PROGRAMME",
            )
        calculated = grants.calculate(programme, app.inputs)
        entry_body = grants.pay_body(
            grant=grant_id,
            application=application,
            amount_fen=app.approved_fen,
            policy_version=policy.version,
        )
        return _sign(tx, "grant.pay", entry_body), calculated

    done, calculated = write(request, work)
    r = done.result
    return GrantPaid(
        entry=Recorded.of(done),
        grant=r["grant"],
        application=r["application"],
        payee=r["payee"],
        programme=r["programme"],
        calculated_fen=calculated,
        requested_fen=r["requested_fen"],
        paid_fen=r["paid_fen"],
        paid_yuan=yuan(r["paid_fen"]),
        bound_by=r["bound_by"],
        policy_version=r["policy_version"],
    )


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
    service = service_of(request)
    with reading(request) as state:
        now = service.ledger.clock()
        found = []
        for v in vouchers.book(state).vouchers.values():
            if (holder is None or v.holder == holder) and (
                programme is None or v.programme == programme
            ):
                view = voucher_out(vouchers.voucher_view(state, v.id, now))
                if status is None or view.status == status:
                    found.append(view)
    return VoucherList(count=len(found), vouchers=found)


@router.get("/vouchers/{voucher}", response_model=VoucherOut)
def get_voucher(request: Request, voucher: IdPath, _: AdminOrAuditor) -> VoucherOut:
    """One voucher: status, balance, every remaining cap, its credential and history."""
    service = service_of(request)
    with reading(request) as state:
        return voucher_out(vouchers.voucher_view(state, voucher, service.ledger.clock()))


VOUCHER_ACTIONS = {
    "suspend": "Suspend a voucher (claims on it are refused until it is reinstated).",
    "reinstate": "Reinstate a suspended voucher (not while its holder is blacklisted).",
    "revoke": "Revoke a voucher for good; its open holds are voided.",
    "expire": "Record the expiry of a voucher past its validity; its open holds are voided.",
}


def _status_route(action: str, summary: str) -> None:
    kind = f"voucher.{action}"

    def change(
        request: Request, voucher: IdPath, body: VoucherStatusIn, _: Admin
    ) -> VoucherStatusOut:
        entry_body = vouchers.status_body(voucher, body.reason, body.evidence_sha256)
        done: Appended = write(request, lambda tx: _sign(tx, kind, entry_body))
        return VoucherStatusOut(
            entry=Recorded.of(done),
            voucher=voucher,
            status=done.result["status"],
            holds_released=list(done.result["holds_released"]),
        )

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


def _calculator_inputs(programme: Programme, inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs a programme's calculator (and its entity cap) read, typed and checked."""
    calc = programme.calculator
    if calc is None:
        raise Refused(f"{programme.label} has no grant calculator", reason="NOT_A_GRANT_PROGRAMME")
    names = {
        "rank_tiers": [calc.rank_input],
        "per_rack": [calc.racks_input, calc.cost_input],
        "investment_share": [calc.amount_input],
    }[calc.kind]
    cap = programme.entity_cap
    if cap is not None and cap.by_input is not None:
        names.append(cap.by_input)
    r = Reader(dict(inputs), "body.inputs")
    r.obj(names, [n for n in programme.inputs if n not in names])
    return {n: programme.inputs[n].read(r) for n in names}


@router.post("/grants/calculate", response_model=Calculated, responses=problem_responses(422))
def calculate_grant(request: Request, body: CalculateIn, _: AdminOrAuditor) -> Calculated:
    """What a one-time grant programme's calculator gives for these inputs (writes nothing):
    (一) rank → 100/75/50/25 万元; (二) racks in use × min(1000 元, 50 % of the average
    renovation cost per rack); (七) 30 % of the investment; each within the entity cap."""
    with reading(request) as state:
        policy = current_policy(state)
    programme = policy.programme(body.programme)
    inputs = _calculator_inputs(programme, body.inputs)
    calculated = grants.calculate(programme, inputs)
    cap = None if programme.entity_cap is None else programme.entity_cap.for_inputs(inputs)
    amount = grants.grant_amount(programme, inputs)
    assert programme.calculator is not None
    return Calculated(
        programme=programme.id,
        calculator=programme.calculator.kind,
        calculated_fen=calculated,
        entity_cap_fen=cap,
        amount_fen=amount,
        amount_yuan=yuan(amount),
        policy_version=policy.version,
    )


@router.get("/grants/{grant}", response_model=GrantOut)
def get_grant(request: Request, grant: IdPath, _: AdminOrAuditor) -> GrantOut:
    """One grant: requested, paid, the cap that bound it, clawed back, net."""
    with reading(request) as state:
        view = grants.grant_view(state, grant)
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
    with reading(request) as state:
        view = claims.claim_view(state, centre, record_id)
    return ClaimOut.model_validate({**view, "subsidy_yuan": yuan(view["subsidy_fen"])})


@router.post("/reversals", status_code=201, response_model=Reversed, responses=WRITE_ERRORS)
def reverse_claim(request: Request, body: ReverseIn, _: Admin) -> Reversed:
    """Reverse a wrong claim: every cap it counts against gets its amount back. The usage
    record id stays taken (never claimed twice)."""
    entry_body = corrections.reverse_body(
        centre=body.claim.centre,
        record_id=body.claim.record_id,
        reason=body.reason,
        evidence_sha256=body.evidence_sha256,
    )
    done: Appended = write(request, lambda tx: _sign(tx, "claim.reverse", entry_body))
    restored = int(done.result["restored_fen"])
    return Reversed(
        entry=Recorded.of(done),
        centre=done.result["centre"],
        record_id=done.result["record_id"],
        restored_fen=restored,
        restored_yuan=yuan(restored),
    )


@router.post("/clawbacks", status_code=201, response_model=ClawedBack, responses=WRITE_ERRORS)
def claw_back(request: Request, body: ClawbackIn, _: Admin) -> ClawedBack:
    """追回: recover part or all of a claim's or grant's subsidy, with the reason and the
    SHA-256 of the evidence. The amount returns to the budget but stays counted against
    the holder's caps."""
    target = body.target
    claim = None if target.claim is None else (target.claim.centre, target.claim.record_id)
    entry_body = corrections.clawback_body(
        amount_fen=body.amount_fen,
        reason=body.reason,
        evidence_sha256=body.evidence_sha256,
        claim=claim,
        grant=target.grant,
    )
    done: Appended = write(request, lambda tx: _sign(tx, "clawback", entry_body))
    r = done.result
    return ClawedBack(
        entry=Recorded.of(done),
        target=r["target"],
        clawed_back_fen=r["clawed_back_fen"],
        clawed_back_yuan=yuan(r["clawed_back_fen"]),
        net_fen=r["net_fen"],
        evidence_sha256=r["evidence_sha256"],
        reason=r["reason"],
    )


# --- policy --------------------------------------------------------------------------------


@router.get("/policy", response_model=PolicyOut)
def get_policy(
    request: Request,
    _: AdminOrAuditor,
    round: Annotated[str, Query(max_length=64, description="policy round")] = DEFAULT_POLICY,
) -> PolicyOut:
    """The round's policy in force: the document, its version hash and where it was published."""
    with reading(request) as state:
        policy = current_policy(state, round)
        index = policy_book(state).published_at[policy.version]
    return PolicyOut(
        round=policy.round, version=policy.version, published_index=index, policy=policy.to_json()
    )


def _new_rate_cards(tx: Transaction, policy: Policy) -> list[dict[str, Any]]:
    """Bodies of the policy's rate cards the log does not have yet (a centre new in the
    policy has none); refuse a card that changes one already published under the same
    version number, or that is out of order."""
    book = claims.book(tx.state)
    last: dict[str, tuple[int, Any]] = {}
    for cid, known in book.centres.items():
        if known.rate_cards:
            newest = known.rate_cards[-1]
            last[cid] = (newest.version, newest.effective_from)
    bodies = []
    for card in policy.rate_cards:
        centre = book.centres.get(card.centre)
        published = {c.version: c for c in centre.rate_cards} if centre else {}
        if card.version in published:
            old = published[card.version]
            if dict(old.prices) != dict(card.prices) or old.effective_from != card.effective_from:
                raise Conflict(
                    f"rate card {card.version} of {card.centre} is already published with "
                    "other prices or start; give the change the next version number",
                    reason="RATECARD_VERSION",
                )
            continue
        before = last.get(card.centre)
        expected = before[0] + 1 if before else 1
        if card.version != expected:
            raise Conflict(
                f"{card.centre}'s next rate card is version {expected}, not {card.version}",
                reason="RATECARD_VERSION",
            )
        if before is not None and card.effective_from <= before[1]:
            raise InvalidInput(
                f"rate card {card.version} of {card.centre} must take effect after version "
                f"{before[0]}",
                reason="RATECARD_VERSION",
            )
        last[card.centre] = (card.version, card.effective_from)
        bodies.append(
            claims.ratecard_body(card.centre, card.version, card.effective_from, card.prices)
        )
    return bodies


@router.post("/policy", status_code=201, response_model=PolicyPublished, responses=WRITE_ERRORS)
def publish_policy(
    request: Request,
    _: Admin,
    document: Annotated[
        dict[str, Any],
        Body(description="a policy document (format suanli-policy/v1, docs/policy.md)"),
    ],
) -> PolicyPublished:
    """Publish a new policy version (it becomes the round's policy in force; later decisions
    cite it), with any centres and rate cards new in it. The document is validated as
    ``Policy.from_json`` reads a policy file: integers only, every figure checked."""
    entry_body = publish_body(document)
    policy = Policy.from_json(entry_body["policy"])

    def work(tx: Transaction) -> tuple[Appended, list[str], list[str]]:
        # Everything that could be refused is checked before the first append.
        known = claims.book(tx.state).centres
        centre_bodies = [
            claims.centre_body(c.id, c.name, c.kind)
            for c in policy.centres.values()
            if c.id not in known
        ]
        versions = policy_book(tx.state).published_at
        if policy.version in versions:
            raise Conflict(
                f"policy version {policy.version} was already published at entry "
                f"{versions[policy.version]}",
                reason="POLICY_EXISTS",
            )
        card_bodies = _new_rate_cards(tx, policy)
        done = _sign(tx, "policy.publish", entry_body)
        for centre_body in centre_bodies:
            _sign(tx, "centre.register", centre_body)
        for card_body in card_bodies:
            _sign(tx, "ratecard.publish", card_body)
        return (
            done,
            [b["centre"] for b in centre_bodies],
            [f"{b['centre']}@{b['version']}" for b in card_bodies],
        )

    done, centres, cards = write(request, work)
    return PolicyPublished(
        entry=Recorded.of(done),
        round=policy.round,
        policy_version=policy.version,
        centres_registered=centres,
        rate_cards_published=cards,
    )


# --- the issuer's public key (no token) ----------------------------------------------------


@issuer_router.get("/jwk", response_model=Jwk)
def issuer_key(request: Request) -> Jwk:
    """The issuer key that signs vouchers now, as an RFC 8037 OKP JWK: with it alone, any
    JOSE library verifies a voucher credential (alg EdDSA)."""
    verifier = service_of(request).ledger.keys.issuer.verifier
    return Jwk.model_validate(issuer_jwk(verifier))


@issuer_router.get("/jwks", response_model=JwkSet)
def issuer_keys(request: Request) -> JwkSet:
    """Every issuer key the log has registered (current and retired), as a JWK Set: a
    credential's ``kid`` picks its key."""
    with reading(request) as state:
        found = [
            Jwk.model_validate(issuer_jwk(key.verifier))
            for key in state.registry.keys.values()
            if "issuer" in key.roles
        ]
    return JwkSet(keys=found)
