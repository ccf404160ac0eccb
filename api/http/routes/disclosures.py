"""Disclosures over HTTP: the openings of entries' concealed members (docs/publication.md).

* ``GET /v1/log/disclosures?start=&end=`` (``admin``, ``auditor``): every entry's in a range
  of at most 5,000 indices, for a full audit (``suanli audit verify --token``).
* ``GET /v1/log/entries/{index}/disclosures``: one entry's, to whoever may read them: the
  bureau and auditors, and the entity, district reviewer or centre the entry concerns
  (``ledger.usecases.views.disclosures``); anyone else gets 403 ``NOT_DISCLOSED``. An
  entry whose disclosures were erased answers ``erased_by``: the erase entry's index.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from api.errors import problem_responses
from api.http.auth import bearer, require
from api.http.deps import reading, service_of
from ledger.errors import Denied, InvalidInput, NotFound
from ledger.publication import may_open
from ledger.store.tokens import Principal
from ledger.usecases.views.disclosures import audience

MAX_RANGE = 5000
MAX_INDEX = 2**63 - 1

router = APIRouter(
    tags=["log"], dependencies=[Depends(bearer)], responses=problem_responses(400, 401, 403)
)
Auditor = Annotated[Principal, Depends(require("admin", "auditor"))]
Anyone = Annotated[Principal, Depends(require("admin", "auditor", "grantee", "reviewer", "centre"))]


@router.get("/v1/log/disclosures")
def disclosures(
    request: Request,
    _: Auditor,
    start: Annotated[int, Query(ge=0, le=MAX_INDEX)],
    end: Annotated[int, Query(ge=0, le=MAX_INDEX)],
) -> dict[str, Any]:
    """The disclosures of entries [start, end), by index (entries without any left out)."""
    if not start <= end <= start + MAX_RANGE:
        raise InvalidInput(
            f"a range holds at most {MAX_RANGE} entries and ends after it starts",
            reason="OUT_OF_RANGE",
        )
    found = service_of(request).ledger.store.disclosures(start, end)
    return {"start": start, "end": end, "disclosures": {str(i): list(d) for i, d in found.items()}}


@router.get("/v1/log/entries/{index}/disclosures", responses=problem_responses(404))
def entry_disclosures(
    request: Request,
    principal: Anyone,
    index: Annotated[int, Path(ge=0, le=MAX_INDEX, description="the entry's index")],
) -> dict[str, Any]:
    """One entry's disclosures, to the roles that may open it."""
    store = service_of(request).ledger.store
    if index >= store.size():  # and index + 1 cannot overflow the database's integer
        raise NotFound(f"no entry at index {index}")
    (entry,) = store.read(index, index + 1)
    if entry.erased_by is not None:  # public: the erase entry names it
        return {"index": index, "kind": entry.kind, "erased_by": entry.erased_by, "disclosures": []}
    if not entry.disclosures:  # it conceals nothing: there is nothing to withhold
        return {"index": index, "kind": entry.kind, "disclosures": []}
    with reading(request) as snapshot:
        allowed = audience(snapshot.state, entry)
    if not may_open(
        allowed,
        principal.role,
        entity=principal.entity,
        district=principal.district,
        centre=principal.centre,
    ):
        raise Denied(
            f"entry {index}'s concealed members are not disclosed to this token",
            reason="NOT_DISCLOSED",
        )
    return {"index": index, "kind": entry.kind, "disclosures": list(entry.disclosures)}
