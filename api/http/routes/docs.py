"""The interactive API docs, offline: Swagger UI at ``/docs`` and ReDoc at ``/redoc``.

FastAPI's own pages load their JavaScript and CSS from public CDNs, which many government
networks cannot reach, leaving the pages blank. Here the assets come from the
``fastapi-offline`` package (Swagger UI's ``swagger-ui-bundle.js`` and ``swagger-ui.css``,
ReDoc's ``redoc.standalone.js``), installed through the lock and served by this app under
``/docs/assets/``; nothing is loaded from another origin (no Google fonts, no validator
badge).
"""

from __future__ import annotations

import hashlib
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from ledger.errors import NotFound

router = APIRouter(include_in_schema=False)

ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
ASSET_PATH = "/docs/assets"
# Only this origin: FastAPI's pages start the UIs with an inline script, and ReDoc draws
# its "API docs by Redocly" logo from that company's CDN, which the browser is told to refuse.
CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CSP
    page.headers["X-Content-Type-Options"] = "nosniff"
    return page


TITLE = "suanli API"


def asset_bytes(name: str) -> bytes:
    """One of the packaged assets (``fastapi_offline/static``)."""
    return resources.files("fastapi_offline").joinpath("static", name).read_bytes()


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    """Swagger UI over ``/openapi.json``, its assets from this app."""
    return _offline(
        get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{TITLE} · Swagger UI",
            swagger_js_url=f"{ASSET_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSET_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSET_PATH}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # the badge would call out to a validator
        )
    )


@router.get("/redoc")
def redoc() -> HTMLResponse:
    """ReDoc over ``/openapi.json``, its script from this app, without web fonts."""
    return _offline(
        get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{TITLE} · ReDoc",
            redoc_js_url=f"{ASSET_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSET_PATH}/favicon.png",
            with_google_fonts=False,
        )
    )


@router.get(ASSET_PATH + "/{name}")
def asset(name: str, request: Request) -> Response:
    if name not in ASSETS:
        raise NotFound(f"no such file: {ASSET_PATH}/{name}")
    body = asset_bytes(name)
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {
        "ETag": etag,
        "Cache-Control": "public, max-age=86400",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=ASSETS[name], headers=headers)
