"""Limits on what one HTTP client can make the service do, enforced before anything else.

Two plain ASGI middlewares, outermost in the app, so that they run before routing,
authentication and body parsing:

* ``BodyLimit``: a request body over ``max_body_bytes`` is refused with 413 problem+json
  (``BODY_TOO_LARGE``) — at once when its ``Content-Length`` says so, and otherwise as
  soon as the bytes read pass the limit (a chunked upload), so the service never holds
  more than the limit of one body in memory, authenticated or not.
  A request head (path and headers) over ``max_header_bytes`` is refused 431
  (``HEADERS_TOO_LARGE``); uvicorn's own head limit applies first where its parser has one.
* ``ClientLimit``: at most ``max_requests_per_client`` requests of one client at a time —
  a client is its bearer token (hashed), or its address when it sends none — the next is
  refused with 429 problem+json (``TOO_MANY_REQUESTS``) and ``Retry-After``. The table
  holds only clients with a request in flight, so it never grows beyond them.

``QueryStringFilter`` keeps query strings (which may carry secrets) out of the access log.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from api.errors import PROBLEM_MEDIA_TYPE, MessageTooLarge, problem
from ledger.errors import LedgerError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLarge(MessageTooLarge):
    reason = "BODY_TOO_LARGE"


class HeadTooLarge(MessageTooLarge):
    reason = "HEADERS_TOO_LARGE"


class TooManyRequests(LedgerError):
    kind = "exhausted"
    reason = "TOO_MANY_REQUESTS"


async def send_problem(
    send: Send, scope: Scope, error: LedgerError, status: int, extra: dict[str, str] | None = None
) -> None:
    body = problem(error, str(scope.get("path", "")))
    body["status"] = status
    data = json.dumps(body, ensure_ascii=False).encode()
    headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(data)).encode()),
        (b"connection", b"close"),
        *((k.encode(), v.encode()) for k, v in (extra or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


class BodyLimit:
    """The body limit, and the head limit for HTTP parsers that do not enforce one."""

    def __init__(self, app: App, max_body_bytes: int, max_header_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes
        self.head_limit = max_header_bytes

    def _too_large(self, size: int | None) -> BodyTooLarge:
        said = "more than" if size is None else f"{size} bytes,"
        return BodyTooLarge(
            f"the request body is {said} over the limit of {self.limit} bytes",
            details={"limit": self.limit, **({} if size is None else {"size": size})},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = len(scope.get("raw_path") or b"") + sum(
            len(k) + len(v) + 4 for k, v in scope.get("headers", ())
        )
        if head > self.head_limit:
            error = HeadTooLarge(
                f"the request's headers are {head} bytes, over the limit of "
                f"{self.head_limit} bytes",
                details={"size": head, "limit": self.head_limit},
            )
            await send_problem(send, scope, error, 431)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await send_problem(send, scope, self._too_large(int(declared)), 413)
            return
        seen = 0
        started = refused = False

        async def counted() -> Message:
            # Past the limit: answer 413 now and tell the app the client has gone, so it
            # stops reading; whatever it answers then is dropped by ``watched``.
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit and not started:
                    refused = True
                    await send_problem(send, scope, self._too_large(None), 413)
                    return {"type": "http.disconnect"}
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, watched)


class ClientLimit:
    def __init__(self, app: App, max_in_flight: int) -> None:
        self.app = app
        self.limit = max_in_flight
        self.in_flight: dict[str, int] = {}

    @staticmethod
    def client_of(scope: Scope) -> str:
        authorization = _header(scope, b"authorization")
        if authorization:
            return "token:" + hashlib.sha256(authorization).hexdigest()[:32]
        host = (scope.get("client") or ("?", 0))[0]
        return f"address:{host}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = self.client_of(scope)
        count = self.in_flight.get(client, 0)
        if count >= self.limit:
            error = TooManyRequests(
                f"this client already has {count} requests in progress (at most "
                f"{self.limit}); wait for them, then retry",
                details={"limit": self.limit},
            )
            await send_problem(send, scope, error, 429, {"retry-after": "1"})
            return
        self.in_flight[client] = count + 1
        try:
            await self.app(scope, receive, send)
        finally:
            left = self.in_flight[client] - 1
            if left:
                self.in_flight[client] = left
            else:
                del self.in_flight[client]


class QueryStringFilter(logging.Filter):
    """Drop the query string from uvicorn's access-log lines (its third argument is the
    path with the query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = args[2]
            if "?" in path:
                record.args = (*args[:2], path.split("?", 1)[0] + "?…", *args[3:])
        return True


def quiet_query_strings() -> None:
    """Install the filter on uvicorn's access logger (once)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, QueryStringFilter) for f in access.filters):
        access.addFilter(QueryStringFilter())
