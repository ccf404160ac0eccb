"""The HTTP application: one FastAPI app, errors as RFC 9457 problem+json everywhere."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.bootstrap import Service
from api.errors import PROBLEM_MEDIA_TYPE as PROBLEM
from api.errors import problem
from api.http.deps import LOG_SIZE_HEADER
from api.http.limits import BodyLimit, ClientLimit
from api.http.routes import (
    admin,
    apply,
    audit,
    bureau,
    centres,
    disclosures,
    docs,
    grantee,
    log,
    ops,
    reimbursement,
    review,
    statements,
    web,
)
from ledger.errors import InternalError, InvalidInput, LedgerError

logger = logging.getLogger("suanli.http")
# pydantic's error types for a number outside its bounds
_BOUND_ERRORS = frozenset({"less_than", "less_than_equal", "greater_than", "greater_than_equal"})


def create_app(service: Service) -> FastAPI:
    app = FastAPI(
        title="suanli",
        summary="Compute-voucher (算力券) ledger for 成经信财〔2023〕31号",
        version="0.1.0",
        docs_url=None,  # /docs and /redoc are served offline by api.http.routes.docs
        redoc_url=None,
    )
    app.state.service = service
    app.state.ledger = service.ledger
    app.state.tokens = service.tokens

    add_problem_handlers(app)
    add_middleware(app, service)
    for router in (
        log.router,
        disclosures.router,
        ops.router,
        audit.router,
        web.router,
        docs.router,
        admin.router,
        admin.issuer_router,
        review.router,
        apply.router,
        grantee.router,
        bureau.router,
        statements.router,
        centres.router,
        *reimbursement.ROUTERS,
    ):
        app.include_router(router)
    return app


def add_problem_handlers(app: FastAPI) -> None:
    """Every error as RFC 9457 problem+json: the ledger's refusals, malformed requests,
    HTTP errors, and bugs (an error id only; the text stays in the log)."""

    @app.exception_handler(LedgerError)
    async def ledger_error(request: Request, exc: LedgerError) -> JSONResponse:
        body = problem(exc, str(request.url.path))
        headers = {"WWW-Authenticate": "Bearer"} if exc.kind == "unauthenticated" else None
        return JSONResponse(body, status_code=body["status"], media_type=PROBLEM, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        error = InvalidInput(
            f"{where}: {first.get('msg', 'invalid request')}",
            reason="OUT_OF_RANGE" if first.get("type") in _BOUND_ERRORS else None,
            details={"field": where} if where else None,
        )
        body = problem(error, str(request.url.path))
        body["errors"] = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg"))}
            for e in exc.errors()
        ]
        return JSONResponse(body, status_code=400, media_type=PROBLEM)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = {
            "type": "about:blank",
            "title": str(exc.detail),
            "status": exc.status_code,
            "detail": str(exc.detail),
            "instance": str(request.url.path),
        }
        headers = getattr(exc, "headers", None)  # e.g. Allow on 405
        return JSONResponse(body, status_code=exc.status_code, media_type=PROBLEM, headers=headers)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        # the id goes to the caller and, with the traceback, to the log; the text never
        # leaves the server
        error_id = uuid.uuid4().hex[:16]
        logger.error("HTTP %s %s failed by a bug; error id %s", request.method,
                  request.url.path, error_id, exc_info=exc)  # fmt: skip
        body = problem(InternalError(error_id), str(request.url.path))
        return JSONResponse(body, status_code=500, media_type=PROBLEM)


def add_middleware(app: FastAPI, service: Service) -> None:
    """The log size on every answer, and the limits (body and head size, requests in
    flight per client); the body limit is the outermost, before anything reads."""

    @app.middleware("http")
    async def log_size_header(request: Request, call_next: Any) -> Any:
        """Every answer says the log size it reflects: a read, the snapshot it was built
        from; a write, the primary's log after it. A caller that sends the largest size it
        has seen as ``Suanli-Min-Log-Size`` never sees a smaller one."""
        response = await call_next(request)
        size = getattr(request.state, "log_size", None)
        if size is None and request.method not in {"GET", "HEAD"}:
            size = service.ledger.state.size
        if size is not None:
            response.headers[LOG_SIZE_HEADER] = str(size)
        return response

    settings = service.settings
    app.add_middleware(ClientLimit, max_in_flight=settings.max_requests_per_client)
    app.add_middleware(  # the outermost
        BodyLimit,
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
    )
