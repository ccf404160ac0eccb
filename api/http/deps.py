"""What the HTTP routes share: the service, its snapshot reads, the caller's scope, ids.

Routes read through ``reading(request)`` (``Service.reading``: the committed state, held
still, and the time views are computed for) and write through
``service_of(request).write(use_case, ...)``.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from fastapi import Request

from api.bootstrap import Service
from ledger.entities import DISTRICTS
from ledger.erasure import ERASABLE_KINDS
from ledger.errors import Denied, InvalidInput
from ledger.fold import opened
from ledger.money import format_fen
from ledger.store.tokens import Principal
from ledger.usecases import Snapshot
from ledger.usecases.views import EntryReader


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


LOG_SIZE_HEADER = "Suanli-Log-Size"
MIN_LOG_SIZE_HEADER = "Suanli-Min-Log-Size"


def min_log_size(request: Request) -> int:
    """The size the caller has already seen (``Suanli-Min-Log-Size``; 0 if none)."""
    raw = request.headers.get(MIN_LOG_SIZE_HEADER)
    if raw is None:
        return 0
    if not (raw.strip().isascii() and raw.strip().isdigit() and len(raw.strip()) <= 18):
        raise InvalidInput(
            f"header {MIN_LOG_SIZE_HEADER} must be a log size (a non-negative integer), "
            f"not {raw[:40]!r}",
            reason="BAD_MIN_LOG_SIZE",
        )
    return int(raw)


def stamp(request: Request, size: int) -> None:
    """The log size this answer reflects (sent as ``Suanli-Log-Size``)."""
    request.state.log_size = size


READ_CONCURRENCY = 2  # views built at once per app; the others wait, off the GIL


def _read_gate(request: Request) -> threading.BoundedSemaphore:
    gate: threading.BoundedSemaphore | None = getattr(request.app.state, "read_gate", None)
    if gate is None:
        with _gate_lock:
            gate = getattr(request.app.state, "read_gate", None)
            if gate is None:
                gate = threading.BoundedSemaphore(READ_CONCURRENCY)
                request.app.state.read_gate = gate
    return gate


_gate_lock = threading.Lock()


@contextmanager
def reading(request: Request) -> Iterator[Snapshot]:
    """The fold at the committed log, held still while a view is built from it; from the
    standby when there is one and it has caught up with what the caller has seen.

    Reads never take the writer's lock, but they share the process (and its GIL) with the
    gRPC edge and the sequencer: at most ``READ_CONCURRENCY`` views are built at once, so
    that 32 clients reading heavy views leave the claim path its share of the interpreter
    (benchmarks/reads.py); the others wait on a semaphore, which holds no GIL."""
    with (
        _read_gate(request),
        service_of(request).reading(min_log_size(request), standby=True) as snapshot,
    ):
        stamp(request, snapshot.state.size)
        yield snapshot


ENTRY_CACHE = 4096  # entries kept per app (most recently used); the log never changes
UNCACHED_KINDS = frozenset(ERASABLE_KINDS) | {"statement.lines"}


class _EntryCache:
    """A bounded LRU of parsed entries, shared by an app's requests."""

    def __init__(self, size: int = ENTRY_CACHE) -> None:
        self.size, self.lock = size, threading.Lock()
        self.entries: OrderedDict[int, dict[str, Any]] = OrderedDict()

    def get(self, indices: Sequence[int]) -> dict[int, dict[str, Any]]:
        with self.lock:
            found = {i: self.entries[i] for i in indices if i in self.entries}
            for i in found:
                self.entries.move_to_end(i)
            return found

    def put(self, parsed: Mapping[int, dict[str, Any]]) -> None:
        with self.lock:
            self.entries.update(parsed)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)


def entry_reader(request: Request) -> EntryReader:
    """Entries by index as JSON, their concealed members opened (views that read entries
    are role-scoped: they show only what their caller may read); runs of consecutive
    indices are read in one query."""
    state = request.app.state
    store = service_of(request).ledger.store
    cache: _EntryCache = getattr(state, "entry_cache", None) or _EntryCache()
    state.entry_cache = cache

    def read(indices: Sequence[int]) -> Mapping[int, Mapping[str, Any]]:
        found = cache.get(indices)
        wanted = sorted(set(indices) - set(found))
        fresh: dict[int, dict[str, Any]] = {}
        for start, end in _runs(wanted):
            for offset, entry in enumerate(store.read(start, end)):
                fresh[start + offset] = opened(entry).to_json()
        # an application's entries may yet be erased: never kept opened; a statement's
        # lines parts (up to 64 KiB each, thousands per statement) are read in order by
        # pages and exports, and kept they would hold a whole statement in memory
        cache.put({i: e for i, e in fresh.items() if e["kind"] not in UNCACHED_KINDS})
        return {**found, **fresh}

    return read


def _runs(indices: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Sorted indices as half-open runs of consecutive ones."""
    start = previous = None
    for index in indices:
        if previous is None or index != previous + 1:
            if start is not None and previous is not None:
                yield start, previous + 1
            start = index
        previous = index
    if start is not None and previous is not None:
        yield start, previous + 1


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
