"""The web page: ``/`` and its static files under ``/web/``, shipped in the package.

Everything the page needs is in ``api/http/web/`` (hand-written HTML, JavaScript, CSS and SVG);
nothing is loaded from another origin, and the Content-Security-Policy says so to the
browser: scripts, styles, images and requests come from this origin only. The page talks to
the JSON API with the token the user pastes in (kept in sessionStorage, sent as Bearer).
"""

from __future__ import annotations

import hashlib
from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ledger.errors import NotFound

router = APIRouter(include_in_schema=False)

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".json": "application/json",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate (ETag) so an upgrade shows at once
}


def web_root() -> Traversable:
    return resources.files("api.http").joinpath("web")


def _asset(name: str, request: Request) -> Response:
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    parts = name.split("/")
    if suffix not in MEDIA_TYPES or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise NotFound(f"no such file: /web/{name}")
    node = web_root()
    for part in parts:
        node = node.joinpath(part)
    if not node.is_file():
        raise NotFound(f"no such file: /web/{name}")
    body = node.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {**HEADERS, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=MEDIA_TYPES[suffix], headers=headers)


@router.get("/")
def index(request: Request) -> Response:
    """The page (受资助方 grantee · 审计 auditor · 主管部门 bureau views)."""
    return _asset("index.html", request)


@router.get("/web/{name:path}")
def asset(name: str, request: Request) -> Response:
    return _asset(name, request)


@router.get("/favicon.ico")
def favicon(request: Request) -> Response:
    return _asset("icon.svg", request)
