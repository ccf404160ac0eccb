"""The district reviewers' API (role ``reviewer``, one 区县 per token): ``/v1/review/...``.

A reviewer sees only the applications of its own 区县 (the applicant entity's district) and
gives its opinion (审核意见: approve or reject, with a note) before the policy's review
deadline (三、(二): 2023-08-30 24:00, Asia/Shanghai). An application of another district
is refused with 403 ``NOT_YOUR_DISTRICT``, also when it only asks to read it, and nothing
is written. The opinion is recorded by the service key in an ``application.review`` entry
that names the district and the reviewer's token id.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from api.errors import problem_responses
from api.http.auth import check_district, require
from api.http.deps import reading, reviewer_district, service_of
from api.http.paging import Paging
from api.http.schemas import (
    ApplicationList,
    ApplicationOut,
    IdPath,
    ReviewIn,
    ReviewRecorded,
    Status,
    application_out,
    application_page,
    recorded,
)
from ledger import applications
from ledger.store.tokens import Principal
from ledger.usecases.commands.applications import review_application
from ledger.usecases.views.applications import application_list

REVIEW_ROLES = ("reviewer",)
Reviewer = Annotated[Principal, Depends(require(*REVIEW_ROLES))]

router = APIRouter(
    prefix="/v1/review", tags=["review"], responses=problem_responses(400, 401, 403, 404)
)


@router.get("/applications", response_model=ApplicationList)
def list_applications(
    request: Request,
    principal: Reviewer,
    status: Annotated[Status | None, Query(description="e.g. submitted: still to review")] = None,
    programme: Annotated[str | None, Query(max_length=64, description="programme id")] = None,
    *,
    response: Response,
    page: Paging,
) -> ApplicationList:
    """The applications of this reviewer's 区县, in log order."""
    district = reviewer_district(principal)
    with reading(request) as snapshot:
        found = application_list(
            snapshot.state, district=district, status=status, programme=programme
        )
    return application_page(request, response, found, page)


def _own_application(request: Request, application: str, principal: Principal) -> ApplicationOut:
    """One application of this reviewer's 区县 (403 NOT_YOUR_DISTRICT for another's)."""
    with reading(request) as snapshot:
        app = applications.application_of(snapshot.state, application)
        check_district(principal, app.district)
        return application_out(applications.application_view(snapshot.state, application))


@router.get("/applications/{application}", response_model=ApplicationOut)
def get_application(request: Request, application: IdPath, principal: Reviewer) -> ApplicationOut:
    """One application of this reviewer's 区县 (403 NOT_YOUR_DISTRICT for another's)."""
    reviewer_district(principal)
    return _own_application(request, application, principal)


@router.post(
    "/applications/{application}/opinion",
    response_model=ReviewRecorded,
    responses=problem_responses(409, 422),
)
def give_opinion(
    request: Request, application: IdPath, body: ReviewIn, principal: Reviewer
) -> ReviewRecorded:
    """The district's opinion on an application of its own 区县, before the review deadline
    (refused after it, and a second opinion is refused as a conflict)."""
    district = reviewer_district(principal)
    _own_application(request, application, principal)  # an application's 区县 never changes
    done = service_of(request).write(
        review_application,
        application=application,
        district=district,
        reviewer=principal.token_id,
        opinion=body.opinion,
        note=body.note,
    )
    return recorded(ReviewRecorded, done, **done.body)
