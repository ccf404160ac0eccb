"""The witness's HTTP interface (c2sp.org/tlog-witness), with the submission and the
monitoring prefix both at the root:

* ``POST /add-checkpoint``: the request body of the spec; 200 with the cosignature line(s),
  or 400 / 403 / 404 / 409 (body: the latest size, ``text/x.tlog.size``) / 422.
* ``GET /<hex SHA-256 of the origin>/checkpoint``: the latest checkpoint this witness
  cosigned for that log, with the log's signatures and its own; 404 if none.
* ``GET /healthz``: 200 ``ok`` when the store answers.

Bodies are ``text/plain; charset=utf-8`` except the 409's, which the spec fixes. Refusals
other than 409 carry one line saying what was wrong (the spec only fixes their status).
No OpenAPI document: the protocol is the C2SP text format, not JSON.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.witness.service import WitnessService
from ledger.errors import LedgerError
from ledger.witness import (
    SIZE_CONTENT_TYPE,
    InconsistentCheckpoint,
    LogSignatureRejected,
    MalformedRequest,
    OldSizeConflict,
    UnknownLog,
)

log = logging.getLogger("suanli.witness")

TEXT = "text/plain; charset=utf-8"
# A checkpoint with the 16 signatures a verifier must accept, post-quantum ones included
# (up to ~5 kB each, c2sp.org/signed-note), plus 63 proof lines, fits many times over.
MAX_BODY = 256 * 1024

# The status c2sp.org/tlog-witness prescribes for each refusal of ledger.witness.
STATUS: dict[type[LedgerError], int] = {
    MalformedRequest: 400,
    LogSignatureRejected: 403,
    UnknownLog: 404,
    OldSizeConflict: 409,
    InconsistentCheckpoint: 422,
}


def _text(body: str, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=TEXT)


def refusal(exc: LedgerError) -> Response:
    """The HTTP answer for a refusal of ``ledger.witness``."""
    if isinstance(exc, OldSizeConflict):
        # Set as a header, not media_type: Starlette would append "; charset=utf-8", and
        # the spec fixes the Content-Type to exactly text/x.tlog.size.
        return Response(exc.body(), status_code=409, headers={"Content-Type": SIZE_CONTENT_TYPE})
    status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), None)
    if status is None:
        log.error("unexpected refusal %s: %s", exc.reason, exc.message)
        return _text("internal error\n", 500)
    return _text(f"{exc.message}\n", status)


async def _read_body(request: Request) -> bytes | None:
    """The body, or ``None`` if it exceeds MAX_BODY (read no further than that)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(service: WitnessService) -> FastAPI:
    app = FastAPI(
        title="suanli witness",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    @app.post("/add-checkpoint")
    async def add_checkpoint(request: Request) -> Response:
        body = await _read_body(request)
        if body is None:
            return _text(f"request body larger than {MAX_BODY} bytes\n", 413)
        try:
            # The store is synchronous (SQLAlchemy); keep it off the event loop.
            result = await run_in_threadpool(service.add_checkpoint, body)
        except LedgerError as exc:
            return refusal(exc)
        return _text(result.response())

    @app.get("/healthz")
    async def healthz() -> Response:
        try:
            await run_in_threadpool(service.store.origins)
        except Exception:  # any store failure means not healthy; the log says which
            log.exception("health check: the witness store does not answer")
            return _text("store unavailable\n", 503)
        return _text("ok\n")

    @app.get("/{hashed_origin}/checkpoint")
    async def checkpoint(hashed_origin: str) -> Response:
        note = await run_in_threadpool(service.latest_checkpoint, hashed_origin)
        if note is None:
            return _text("this witness has not cosigned a checkpoint of that log\n", 404)
        return _text(note)

    return app
