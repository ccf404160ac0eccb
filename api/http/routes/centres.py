"""What a compute centre reads over HTTP about itself: its rate cards.

* ``GET /v1/centres/{centre}/rate-cards?cursor=&limit=`` (``admin``, ``auditor``,
  ``centre``: its own only, 403 ``NOT_YOUR_CENTRE``): the centre's published rate cards,
  oldest first, a page at a time (``next_cursor``, ``Link: rel="next"``). The centre agent
  prices its claims with them (``suanli centre run --rates http://ledger:8080``).

A centre's statements are read under ``/v1/statements`` with the same token.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.errors import problem_responses
from api.http.auth import bearer, check_centre, require
from api.http.deps import reading
from api.http.paging import Paging, link_next
from ledger.store.tokens import Principal
from ledger.usecases.views import centres

READ_ROLES = ("admin", "auditor", "centre")
CENTRE_PATTERN = r"^[a-z0-9][a-z0-9\-]{0,31}$"

router = APIRouter(
    prefix="/v1/centres",
    tags=["centres"],
    dependencies=[Depends(bearer)],
    responses=problem_responses(400, 401, 403, 404),
)
Reader = Annotated[Principal, Depends(require(*READ_ROLES))]


class PriceOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    price_fen: int = Field(description="fen per per_units of the resource's smallest unit")
    per_units: int


class RateCardOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    centre: str
    version: int
    effective_from: str = Field(description="in force from then until the next version")
    prices: dict[str, PriceOut] = Field(description="by resource (cpu, gpu:a100, ...)")
    index: int = Field(description="the ratecard.publish entry's log index")


class RateCardPage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    centre: str
    rate_cards: list[RateCardOut]
    next_after: int | None = Field(description="the next page's cursor as a number")
    next_cursor: str | None = Field(description="pass as cursor= for the next page; null: the last")


@router.get("/{centre}/rate-cards", response_model=RateCardPage)
def rate_cards(
    request: Request,
    response: Response,
    principal: Reader,
    centre: Annotated[str, Path(pattern=CENTRE_PATTERN)],
    paging: Paging,
) -> dict[str, Any]:
    """The centre's rate cards, oldest first (a centre token: its own only); the cursor is
    a card's version."""
    check_centre(principal, centre)
    with reading(request) as snapshot:
        page = centres.rate_cards(
            snapshot.state, centre, after_version=paging.after_index(0), limit=paging.limit
        )
    following = page["next_after"]
    page["next_cursor"] = None if following is None else str(following)
    link_next(request, response, page["next_cursor"])
    return page
