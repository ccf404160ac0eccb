"""The auditor's read-only API: the key registry, policy versions, entries by kind, the whole log.

Everything here is read from the committed log (and the fold of it) and changes nothing.
The roles ``auditor`` and ``admin`` may call it. The public log routes (``/checkpoint``,
``/tile/...``, ``/v1/log/...``) need no token; these add what an auditor wants without
writing a tile client: the registry as the fold sees it, every ``policy.publish``, entries
filtered by kind and paged, and the whole log as one JSON Lines download for people's own
tools. ``suanli audit verify`` itself reads the tiles (or a tiles export directory).

Errors are RFC 9457 problem+json; ``PROBLEM_RESPONSES`` declares them in the OpenAPI
document (and keeps FastAPI from declaring its 422, which this app never sends: request
validation errors are 400 problems).
"""

from __future__ import annotations

import base64
import json
import threading
from array import array
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.errors import problem_responses
from api.http.auth import bearer, require
from api.http.deps import reading, stamp
from api.http.paging import PageInfo, Paging, link_next
from ledger import merkle
from ledger.errors import InvalidInput
from ledger.store.log import LogStore
from ledger.store.unit_of_work import FoldedLog
from ledger.usecases.views.keys import key_registry

AUDIT_ROLES = ("auditor", "admin")

# bearer (auto_error off) only declares the security scheme in the OpenAPI document;
# require() is what checks the token and the role.
router = APIRouter(
    prefix="/v1/audit",
    tags=["audit"],
    dependencies=[Depends(bearer), Depends(require(*AUDIT_ROLES))],
    responses=problem_responses(401, 403),
)


def _ledger(request: Request) -> FoldedLog:
    ledger: FoldedLog = request.app.state.ledger
    return ledger


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- an index of the log by kind -----------------------------------------------------------


class KindIndex:
    """Log indices by entry kind, caught up incrementally from the committed log.

    The log is append-only, so the index only ever grows; each process keeps its own and
    reads only what was committed since its last look. 8 bytes per entry.
    """

    def __init__(self) -> None:
        self.size = 0
        self.by_kind: dict[str, array[int]] = {}
        self._lock = threading.Lock()

    def catch_up(self, store: LogStore, upto: int) -> None:
        with self._lock:
            for index, data in store.iter_entries(self.size):
                if index >= upto:
                    break
                kind = str(json.loads(data)["kind"])
                self.by_kind.setdefault(kind, array("q")).append(index)
                self.size = index + 1

    def kinds(self) -> dict[str, int]:
        with self._lock:
            return {kind: len(found) for kind, found in sorted(self.by_kind.items())}

    def select(self, kinds: Sequence[str], after: int, limit: int, upto: int) -> list[int]:
        """Up to ``limit`` indices ``> after`` and ``< upto`` of entries of any of ``kinds``."""
        with self._lock:
            picked: list[int] = []
            for kind in kinds:
                found = self.by_kind.get(kind)
                if found is None:
                    continue
                start = bisect_right(found, after)
                picked.extend(i for i in found[start : start + limit] if i < upto)
        return sorted(set(picked))[:limit]


_index_lock = threading.Lock()


def kind_index(request: Request) -> KindIndex:
    state = request.app.state
    with _index_lock:
        found: KindIndex | None = getattr(state, "audit_kind_index", None)
        if found is None:
            found = KindIndex()
            state.audit_kind_index = found
    return found


def _log_size(ledger: FoldedLog) -> int:
    """The size of the latest checkpoint: what every response here describes."""
    latest = ledger.store.latest_checkpoint()
    return 0 if latest is None else latest[0]


def _read(store: LogStore, indices: Sequence[int]) -> list[tuple[int, bytes]]:
    """Entries at ``indices`` (sorted), read in runs of nearby indices, one query per run."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(indices):
        j = i
        while j + 1 < len(indices) and indices[j + 1] - indices[j] <= 16:
            j += 1
        start, end = indices[i], indices[j] + 1
        rows = store.entries(start, end)
        wanted = set(indices[i : j + 1])
        out.extend((start + k, data) for k, data in enumerate(rows) if start + k in wanted)
        i = j + 1
    return out


# --- response models -----------------------------------------------------------------------


class AuditKey(BaseModel):
    key_id: str = Field(description="name+hex8, as entries' signatures name it")
    vkey: str = Field(description="C2SP signed-note verifier key: name+hex8+base64(0x01‖pub)")
    name: str
    roles: list[str] = Field(description="log, registry, issuer, service, centre")
    centre: str | None = Field(description="the centre a centre key speaks for")
    valid_from_index: int = Field(description="first log index this key may sign")
    valid_until_index: int | None = Field(
        description="first log index it may no longer sign (retired or rotated); null: active"
    )
    active: bool = Field(description="whether it may sign the next entry")


class LogKeyEpoch(BaseModel):
    vkey: str
    from_size: int = Field(description="checkpoints of this size and larger are signed by it")


class AuditKeys(BaseModel):
    size: int = Field(description="log size the registry was read at")
    origin: str | None = Field(description="the checkpoint origin named by log.genesis")
    keys: list[AuditKey]
    log_keys: list[LogKeyEpoch]


class PolicyVersion(BaseModel):
    index: int = Field(description="log index of the policy.publish entry")
    at: str = Field(description="the entry's time (RFC 3339, UTC)")
    version: str = Field(description="SHA-256 (hex) of the policy's RFC 8785 canonical JSON")
    round: str | None = Field(description="the round the policy states")
    current: bool = Field(description="the round's policy in force (its latest publication)")
    signed_by: list[str] = Field(description="key ids of the entry's signatures")
    leaf_hash: str = Field(description="base64 RFC 9162 leaf hash")
    body: dict[str, Any] = Field(description="the entry body: {policy, version}")


class AuditPolicies(BaseModel):
    size: int
    policies: list[PolicyVersion]


class AuditEntry(BaseModel):
    index: int
    kind: str
    at: str
    leaf_hash: str = Field(description="base64 SHA-256(0x00 ‖ canonical entry bytes)")
    entry: dict[str, Any] = Field(description="the entry as JSON: v, kind, at, body, sigs")
    proof: str = Field(description="URL of its inclusion proof in the latest tree")


class AuditEntries(PageInfo):
    model_config = ConfigDict(json_schema_extra={"description": "one page of entries"})

    size: int = Field(description="log size this page was read at")
    kind: str | None = Field(description="the kind filter, if any")
    after: int = Field(description="entries here have index > after")
    entries: list[AuditEntry]
    next_after: int | None = Field(description="the same as next_cursor, as a number")
    kinds: dict[str, int] = Field(description="count of entries of each kind in the log")


# --- routes --------------------------------------------------------------------------------


@router.get("/keys", response_model=AuditKeys)
def keys(request: Request) -> AuditKeys:
    """The key registry from the fold: every key ever registered, its roles and validity."""
    with reading(request) as snapshot:
        return AuditKeys.model_validate(key_registry(snapshot.state))


POLICY_KIND = "policy.publish"


@router.get("/policies", response_model=AuditPolicies)
def policies(request: Request) -> AuditPolicies:
    """Every published policy version: the ``policy.publish`` entries, oldest first."""
    ledger = _ledger(request)
    size = _log_size(ledger)
    stamp(request, size)
    index = kind_index(request)
    index.catch_up(ledger.store, size)
    found: list[PolicyVersion] = []
    for i, data in _read(ledger.store, index.select([POLICY_KIND], -1, size, size)):
        obj = json.loads(data)
        body = obj["body"]
        policy = body.get("policy")
        found.append(
            PolicyVersion(
                index=i,
                at=obj["at"],
                version=str(body.get("version", "")),
                round=policy.get("round") if isinstance(policy, dict) else None,
                current=False,
                signed_by=[s["key"] for s in obj["sigs"]],
                leaf_hash=b64(merkle.leaf_hash(data)),
                body=body,
            )
        )
    latest: dict[str | None, PolicyVersion] = {}
    for p in found:
        latest[p.round] = p  # the fold makes each round's latest publication current
    for p in latest.values():
        p.current = True
    return AuditPolicies(size=size, policies=found)


@router.get("/entries", response_model=AuditEntries, responses=problem_responses(400))
def entries(
    request: Request,
    kind: Annotated[
        str | None,
        Query(
            max_length=200,
            description="only entries of this kind (e.g. policy.publish); a trailing * "
            "matches a prefix (voucher.*); several kinds separated by commas",
        ),
    ] = None,
    *,
    response: Response,
    page: Paging,
) -> AuditEntries:
    """Entries of the log in index order, optionally of some kinds only, a page at a time
    (the cursor: the index of the last entry already read)."""
    ledger = _ledger(request)
    size = _log_size(ledger)
    stamp(request, size)
    after, limit = page.after_index(-1), page.limit
    index = kind_index(request)
    index.catch_up(ledger.store, size)
    counts = index.kinds()
    if kind is None or kind == "":
        start = after + 1
        picked = list(range(start, min(size, start + limit)))
    else:
        picked = index.select(_kinds(kind, counts), after, limit, size)
    rows = _read(ledger.store, picked) if picked else []
    items = []
    for i, data in rows:
        obj = json.loads(data)
        items.append(
            AuditEntry(
                index=i,
                kind=obj["kind"],
                at=obj["at"],
                leaf_hash=b64(merkle.leaf_hash(data)),
                entry=obj,
                proof=f"/v1/log/proof/inclusion?index={i}&size={size}",
            )
        )
    last = items[-1].index if items else None
    more = len(items) == limit and last is not None and last < size - 1
    link_next(request, response, str(last) if more else None)
    return AuditEntries(
        size=size,
        kind=kind or None,
        after=after,
        entries=items,
        next_after=last if more else None,
        next_cursor=str(last) if more else None,
        kinds=counts,
    )


def _kinds(spec: str, known: dict[str, int]) -> list[str]:
    wanted: list[str] = []
    for item in spec.split(","):
        part = item.strip()
        if not part:
            raise InvalidInput("kind: empty kind in the list")
        if part.endswith("*"):
            wanted.extend(k for k in known if k.startswith(part[:-1]))
        else:
            wanted.append(part)
    return list(dict.fromkeys(wanted))


JSONL_MEDIA_TYPE = "application/jsonl"


@router.get(
    "/log.jsonl",
    response_class=StreamingResponse,
    responses={
        **problem_responses(400),
        200: {
            "description": "One JSON object per line, in index order: "
            '{"index": i, "data": base64(canonical entry bytes)}',
            "content": {JSONL_MEDIA_TYPE: {"schema": {"type": "string"}}},
        },
    },
)
def log_jsonl(
    request: Request,
    size: Annotated[
        int | None,
        Query(ge=0, le=2**63 - 1, description="stop at this tree size (default: latest)"),
    ] = None,
) -> StreamingResponse:
    """The whole log (or its first ``size`` entries) as JSON Lines, streamed.

    Each line is ``{"index": i, "data": "<base64 of the entry's canonical bytes>"}``; the
    RFC 9162 leaf hash of entry *i* is SHA-256(0x00 ‖ data). Check the download against a
    signed checkpoint of the same size (``X-Log-Size``; ``/v1/log/checkpoints``).
    """
    ledger = _ledger(request)
    latest = _log_size(ledger)
    if size is None:
        size = latest
    elif size > latest:
        raise InvalidInput(f"size {size} is beyond the log's size {latest}")
    store = ledger.store

    def lines() -> Iterator[bytes]:
        for index, data in store.iter_entries(0, batch=2000):
            if index >= size:
                return
            yield b'{"index":%d,"data":"%s"}\n' % (index, base64.b64encode(data))

    name = (ledger.origin.replace("/", "_") or "log") + f"-{size}.jsonl"
    return StreamingResponse(
        lines(),
        media_type=JSONL_MEDIA_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Log-Size": str(size),
            "Cache-Control": "no-cache",
        },
    )
