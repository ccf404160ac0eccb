"""The log over HTTP: C2SP tlog-tiles (``/checkpoint``, ``/tile/...``) and JSON proofs.

Full tiles never change, so they are served as immutable for a year; partial tiles and the
checkpoint change with every append and are served uncached.
"""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from api.errors import problem_responses
from api.http.deps import min_log_size, service_of, stamp
from api.http.paging import PageRequest, link_next, page_query
from ledger import merkle, tiles
from ledger.errors import InvalidInput, NotFound
from ledger.store.log import load_projection
from ledger.store.unit_of_work import FoldedLog
from ledger.tlogpolicy import format_policy

router = APIRouter()
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
# Indices and sizes are stored as signed 64-bit integers; larger values would overflow the driver.
MAX_INDEX = 2**63 - 2


def _ledger(request: Request) -> FoldedLog:
    """The log to read: the standby's, unless it is behind what the caller has seen."""
    return service_of(request).read_log(min_log_size(request))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _latest(ledger: FoldedLog) -> tuple[int, str]:
    latest = ledger.store.latest_checkpoint()
    if latest is None:
        raise NotFound("the log has no checkpoint yet")
    return latest


@router.get(
    "/checkpoint",
    tags=["log"],
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **problem_responses(404),
    },
)
def checkpoint(request: Request) -> Response:
    """The latest signed checkpoint (c2sp.org/tlog-checkpoint), as text, with its
    witnesses' cosignatures. When the service has a witness policy, the newest checkpoint
    whose cosignatures meet its quorum (until one does, the newest)."""
    served = _ledger(request).store.served_checkpoint(request.app.state.service.witness_policy)
    if served is None:
        raise NotFound("the log has no checkpoint yet")
    size, note = served
    stamp(request, size)
    return Response(
        note,
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": NO_CACHE, "Suanli-Checkpoint-Size": str(size)},
    )


@router.get(
    "/tile/{path:path}",
    tags=["log"],
    response_class=Response,
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            }
        },
        **problem_responses(400, 404),
    },
)
def tile(path: str, request: Request) -> Response:
    """A hash tile or entry bundle (c2sp.org/tlog-tiles)."""
    ledger = _ledger(request)
    ref = tiles.parse_tile_path("tile/" + path)
    size, _note = _latest(ledger)
    try:
        available = tiles.partial_width(0 if ref.is_entries else ref.level, ref.n, size)
    except InvalidInput:
        available = 0
    if ref.width > available:
        raise NotFound(f"tile {path} is not in the tree of size {size}")
    start = ref.n * tiles.TILE_WIDTH
    if ref.is_entries:
        body = tiles.entry_bundle(ledger.store.stored_entries(start, start + ref.width))
    else:
        body = b"".join(
            ledger.store.node_range(ref.level * tiles.TILE_HEIGHT, start, start + ref.width)
        )
    cache = IMMUTABLE if ref.width == tiles.TILE_WIDTH else NO_CACHE
    return Response(body, media_type="application/octet-stream", headers={"Cache-Control": cache})


@router.get("/v1/log/key", tags=["log"])
def log_key(request: Request) -> dict[str, Any]:
    """The log's genesis verifier key string (name+hex8+base64) and checkpoint origin: pin
    these. ``current_vkey`` signs new checkpoints; ``log_keys`` lists every rotation."""
    ledger = _ledger(request)
    with ledger.reading() as state:
        epochs = list(state.registry.log_epochs)
    return {
        "origin": ledger.origin,
        "vkey": epochs[0].verifier.vkey if epochs else ledger.keys.log.verifier.vkey,
        "current_vkey": epochs[-1].verifier.vkey if epochs else ledger.keys.log.verifier.vkey,
        "log_keys": [{"vkey": e.verifier.vkey, "from_size": e.from_size} for e in epochs],
    }


@router.get("/v1/log/witnesses", tags=["log"])
def witnesses(request: Request) -> dict[str, Any]:
    """The log's witnesses (``--witness-policy``): each one's cosignature key and the
    largest size it has cosigned here, the quorum ``/checkpoint`` waits for, and the policy
    itself (c2sp.org/tlog-policy) for verifiers to pin. Empty when the log has none."""
    policy = request.app.state.service.witness_policy
    if policy is None:
        return {"quorum": "none", "policy": None, "witnesses": []}
    store = _ledger(request).store
    return {
        "quorum": policy.quorum,
        "policy": format_policy(policy),
        "witnesses": [
            {"name": w.name, "vkey": w.key.vkey, "cosigned_size": store.cosigned_size(w.key.vkey)}
            for w in policy.witnesses
        ],
    }


@router.get("/v1/log/entries/{index}", tags=["log"], responses=problem_responses(400, 404))
def entry(
    index: Annotated[int, Path(le=MAX_INDEX, description="the entry's index")], request: Request
) -> dict[str, Any]:
    """One entry: its canonical bytes (base64), parsed JSON and leaf hash."""
    ledger = _ledger(request)
    if index < 0:
        raise InvalidInput("index must be >= 0")
    rows = ledger.store.entries(index, index + 1)
    if not rows:
        raise NotFound(f"no entry at index {index}")
    data = rows[0]
    return {
        "index": index,
        "entry": json.loads(data),
        "data": b64(data),
        "leaf_hash": b64(merkle.leaf_hash(data)),
        "proof": f"/v1/log/proof/inclusion?index={index}",
    }


@router.get("/v1/log/proof/inclusion", tags=["log"], responses=problem_responses(400, 404))
def inclusion(
    request: Request,
    index: Annotated[int, Query(ge=0)],
    size: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """RFC 9162 inclusion proof of entry ``index`` in the tree of ``size`` (default: latest)."""
    ledger = _ledger(request)
    size = _checked_size(ledger, size)
    if index >= size:
        raise InvalidInput(f"index {index} is not below size {size}")
    read = ledger.store.node_reader()
    proof = merkle.inclusion_proof(index, size, read)
    leaf = read([(0, index)])[(0, index)]
    return {
        "index": index,
        "size": size,
        "leaf_hash": b64(leaf),
        "root": b64(merkle.root_at(size, read)),
        "proof": [b64(h) for h in proof],
        "checkpoint": ledger.store.checkpoint(size),
    }


@router.get("/v1/log/proof/consistency", tags=["log"], responses=problem_responses(400, 404))
def consistency(
    request: Request,
    old: Annotated[int, Query(ge=1)],
    new: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """RFC 9162 consistency proof between the trees of sizes ``old`` and ``new``."""
    ledger = _ledger(request)
    new = _checked_size(ledger, new)
    if old > new:
        raise InvalidInput(f"old size {old} is larger than new size {new}")
    read = ledger.store.node_reader()
    return {
        "old": old,
        "new": new,
        "old_root": b64(merkle.root_at(old, read)),
        "new_root": b64(merkle.root_at(new, read)),
        "proof": [b64(h) for h in merkle.consistency_proof(old, new, read)],
    }


CheckpointPaging = Annotated[
    PageRequest, Depends(page_query(default=1000, maximum=10000))
]  # the cursor: the last size already read


@router.get("/v1/log/checkpoints", tags=["log"], responses=problem_responses(400))
def checkpoints(
    request: Request,
    response: Response,
    page: CheckpointPaging,
) -> dict[str, Any]:
    """Signed checkpoints by size (every size the log had at a commit), for auditors; the
    cursor is the last size already read."""
    ledger = _ledger(request)
    size, _note = _latest(ledger)
    stamp(request, size)
    after = page.after_index(0)
    if after > MAX_INDEX:
        raise InvalidInput(f"query.cursor: {after} is above {MAX_INDEX}", reason="OUT_OF_RANGE")
    rows = ledger.store.checkpoints(after=after, limit=page.limit + 1)
    shown = rows[: page.limit]
    next_cursor = str(shown[-1][0]) if len(rows) > page.limit else None
    link_next(request, response, next_cursor)
    return {
        "size": size,
        "checkpoints": [{"size": s, "note": n} for s, n in shown],
        "next_cursor": next_cursor,
    }


def _checked_size(ledger: FoldedLog, size: int | None) -> int:
    latest, _ = _latest(ledger)
    if size is None:
        return latest
    if size > latest:
        raise InvalidInput(f"size {size} is beyond the log's size {latest}")
    return size


class Projection(BaseModel):
    size: int
    values: dict[str, int]


@router.get(
    "/v1/log/projection",
    tags=["log"],
    response_model=Projection,
    responses=problem_responses(404),
)
def stored_projection(request: Request) -> Projection:
    """The service's stored projection (balances, cap counters, holds) at a log size, for
    ``suanli audit verify`` to compare with its own replay. No more than the log shows."""
    stored = load_projection(_ledger(request).store.engine)
    if stored is None:
        raise NotFound("no projection is stored yet")
    return Projection(size=stored[0], values=stored[1])
