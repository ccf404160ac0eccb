"""The HTTP application: one FastAPI app, errors as RFC 9457 problem+json everywhere."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.bootstrap import Service
from api.errors import PROBLEM_MEDIA_TYPE as PROBLEM
from api.errors import problem
from api.http.routes import (
    admin,
    apply,
    audit,
    bureau,
    disclosures,
    grantee,
    log,
    ops,
    reimbursement,
    review,
    statements,
    web,
)
from ledger.errors import InvalidInput, LedgerError


def create_app(service: Service) -> FastAPI:
    app = FastAPI(
        title="suanli",
        summary="Compute-voucher (算力券) ledger for 成经信财〔2023〕31号",
        version="0.1.0",
    )
    app.state.service = service
    app.state.ledger = service.ledger
    app.state.tokens = service.tokens

    @app.exception_handler(LedgerError)
    async def ledger_error(request: Request, exc: LedgerError) -> JSONResponse:
        body = problem(exc, str(request.url.path))
        headers = {"WWW-Authenticate": "Bearer"} if exc.kind == "unauthenticated" else None
        return JSONResponse(body, status_code=body["status"], media_type=PROBLEM, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        error = InvalidInput(f"{where}: {first.get('msg', 'invalid request')}")
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

    for router in (
        log.router,
        disclosures.router,
        ops.router,
        audit.router,
        web.router,
        admin.router,
        admin.issuer_router,
        review.router,
        apply.router,
        grantee.router,
        bureau.router,
        statements.router,
        *reimbursement.ROUTERS,
    ):
        app.include_router(router)
    return app
