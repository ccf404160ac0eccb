"""The applicants' API (role ``grantee``, one entity per token): ``/v1/apply/...``.

An applicant registers its own entity (the 统一社会信用代码 in the body must be the token's),
reads the round's programmes (inputs, 申报材料 checklist, conditions), submits applications
inside the online submission window (二: 2023-08-18 00:00 to 2023-08-27 24:00,
Asia/Shanghai; outside it 422 ``OUTSIDE_SUBMISSION_WINDOW`` with the window in the
message) and follows them. Its vouchers and history are under ``/v1/me/...``.

Materials are sent as SHA-256 hashes, never as documents: the log keeps one hash per item
of the checklist and the server stores no document at all. The documents go to the
district reviewer as before, who checks them against the hashes (``sha256sum FILE``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from api.errors import problem_responses
from api.http.auth import check_entity, require
from api.http.deps import new_id, own_entity, reading, service_of
from api.http.paging import Paging
from api.http.routes.admin import register_entity
from api.http.schemas import (
    ApplicationIn,
    ApplicationList,
    ApplicationOut,
    ApplicationSubmitted,
    EntityIn,
    EntityOut,
    EntityRegistered,
    IdPath,
    Programmes,
    Status,
    SubmissionWindow,
    application_out,
    application_page,
    programme_out,
    recorded,
)
from ledger import applications, entities
from ledger.policy import DEFAULT_POLICY, current_policy
from ledger.store.tokens import Principal
from ledger.uscc import validate as validate_uscc
from ledger.usecases.commands.applications import submit_application
from ledger.usecases.views.applications import application_list

APPLY_ROLES = ("grantee",)
PROGRAMME_ROLES = ("grantee", "reviewer", "admin", "auditor")

Grantee = Annotated[Principal, Depends(require(*APPLY_ROLES))]
Anyone = Annotated[Principal, Depends(require(*PROGRAMME_ROLES))]

router = APIRouter(
    prefix="/v1/apply", tags=["apply"], responses=problem_responses(400, 401, 403, 404)
)
WRITE_ERRORS = problem_responses(409, 422)


@router.get("/programmes", response_model=Programmes)
def programmes(
    request: Request,
    _: Anyone,
    round: Annotated[str, Query(max_length=64, description="policy round")] = DEFAULT_POLICY,
) -> Programmes:
    """The round's programmes as an applicant needs them: inputs, 申报材料 ids, conditions
    (which must be attested, which the ledger checks), and the submission window."""
    with reading(request) as snapshot:
        policy = current_policy(snapshot.state, round)
    submission, review = policy.window("online_submission"), policy.window("district_review")
    return Programmes(
        round=policy.round,
        policy_version=policy.version,
        online_submission=SubmissionWindow.model_validate(submission.to_json()),
        district_review=SubmissionWindow.model_validate(review.to_json()),
        programmes=[programme_out(p) for p in policy.programmes.values()],
    )


@router.get("/entity", response_model=EntityOut)
def my_entity(request: Request, principal: Grantee) -> EntityOut:
    """The token's own entity, as registered."""
    uscc = own_entity(principal)
    with reading(request) as snapshot:
        return EntityOut.model_validate(entities.entity_view(snapshot.state, uscc))


@router.post("/entity", status_code=201, response_model=EntityRegistered, responses=WRITE_ERRORS)
def register_my_entity(request: Request, body: EntityIn, principal: Grantee) -> EntityRegistered:
    """Register the token's own entity (a 统一社会信用代码 with a wrong character is refused
    naming it; another entity's code is refused with 403 NOT_YOUR_ENTITY)."""
    validate_uscc(body.uscc)
    own_entity(principal)
    check_entity(principal, body.uscc)
    return register_entity(request, body, by_issuer=False)


@router.post(
    "/applications",
    status_code=201,
    response_model=ApplicationSubmitted,
    responses=WRITE_ERRORS,
)
def submit(request: Request, body: ApplicationIn, principal: Grantee) -> ApplicationSubmitted:
    """Apply for a programme as the token's entity, inside the online submission window,
    with every required material's SHA-256 and the attestations the programme asks for."""
    done = service_of(request).write(
        submit_application,
        application=body.application or new_id("A"),
        programme=body.programme,
        applicant=own_entity(principal),
        inputs=body.inputs,
        materials=body.materials,
        attestations=body.attestations,
    )
    return recorded(ApplicationSubmitted, done)


@router.get("/applications", response_model=ApplicationList)
def my_applications(
    request: Request,
    principal: Grantee,
    status: Annotated[Status | None, Query()] = None,
    *,
    response: Response,
    page: Paging,
) -> ApplicationList:
    """The token's entity's applications, in log order."""
    applicant = own_entity(principal)
    with reading(request) as snapshot:
        found = application_list(snapshot.state, applicant=applicant, status=status)
    return application_page(request, response, found, page)


@router.get("/applications/{application}", response_model=ApplicationOut)
def my_application(request: Request, application: IdPath, principal: Grantee) -> ApplicationOut:
    """One of the entity's own applications (403 NOT_YOUR_ENTITY for another's)."""
    own_entity(principal)
    with reading(request) as snapshot:
        app = applications.application_of(snapshot.state, application)
        check_entity(principal, app.applicant)
        return application_out(applications.application_view(snapshot.state, application))
