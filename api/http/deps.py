"""What the HTTP routes share: the service, its snapshot reads, the caller's scope, ids.

Routes read through ``reading(request)`` (``Service.reading``: the committed state, held
still, and the time views are computed for) and write through
``service_of(request).write(use_case, ...)``.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from fastapi import Request

from api.bootstrap import Service
from ledger.entities import DISTRICTS
from ledger.errors import Denied, InvalidInput
from ledger.money import format_fen
from ledger.store.tokens import Principal
from ledger.usecases import Snapshot
from ledger.usecases.views.history import EntryReader


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


@contextmanager
def reading(request: Request) -> Iterator[Snapshot]:
    """The fold at the committed log, held still while a view is built from it."""
    with service_of(request).reading() as snapshot:
        yield snapshot


_cache_lock = threading.Lock()


def entry_reader(request: Request) -> EntryReader:
    """Entries by index as JSON, cached per app (the log never changes)."""
    state = request.app.state
    store = service_of(request).ledger.store

    def read(indices: Sequence[int]) -> Mapping[int, Mapping[str, Any]]:
        with _cache_lock:
            cache: dict[int, dict[str, Any]] | None = getattr(state, "entry_cache", None)
            if cache is None:
                cache = state.entry_cache = {}
            wanted = [i for i in indices if i not in cache]
        for index in wanted:
            rows = store.entries(index, index + 1)
            if rows:
                parsed = json.loads(rows[0])
                with _cache_lock:
                    cache[index] = parsed
        with _cache_lock:
            return {i: cache[i] for i in indices if i in cache}

    return read


def new_id(prefix: str) -> str:
    """A fresh identifier (``A-``, ``V-``, ``G-`` + 12 hex digits) for a new record."""
    return f"{prefix}-{secrets.token_hex(6)}"


def yuan(amount_fen: int) -> str:
    return format_fen(amount_fen)


def own_entity(principal: Principal) -> str:
    """A grantee token's own entity."""
    if not principal.entity:
        raise Denied("this grantee token names no entity", reason="NOT_YOUR_ENTITY")
    return principal.entity


def reviewer_district(principal: Principal) -> str:
    """A reviewer token's 区县, refused clearly if it is not one the ledger knows."""
    district = principal.district or ""
    if district not in DISTRICTS:
        raise Denied(
            f"this reviewer token names district {district!r}, which is not one of Chengdu's "
            f"区(市)县 or functional zones ({', '.join(DISTRICTS)}); create a token with the "
            "exact name",
            reason="NOT_YOUR_DISTRICT",
        )
    return district


def district_query(district: str | None) -> str | None:
    """A ``district`` query parameter: one of the 区县 the ledger knows, or none."""
    if district is not None and district not in DISTRICTS:
        raise InvalidInput(
            f"query.district: {district!r} is not a district; known: {', '.join(DISTRICTS)}"
        )
    return district
