"""The one mapping from ledger errors to HTTP statuses (RFC 9457 problem+json) and gRPC codes.

Every refusal is a ``LedgerError`` (``ledger.errors``); its ``kind`` picks the HTTP status
and the gRPC code here, for every way in. The few errors only the ways in raise (a message
too large, a deadline passed) are ``LedgerError`` kinds too.
"""

from __future__ import annotations

from typing import Any

import grpc

from ledger.errors import LedgerError

# LedgerError.kind -> (HTTP status, gRPC status code)
STATUS: dict[str, tuple[int, grpc.StatusCode]] = {
    "invalid": (400, grpc.StatusCode.INVALID_ARGUMENT),
    "not_found": (404, grpc.StatusCode.NOT_FOUND),
    "conflict": (409, grpc.StatusCode.ALREADY_EXISTS),
    "precondition": (422, grpc.StatusCode.FAILED_PRECONDITION),
    "exhausted": (422, grpc.StatusCode.RESOURCE_EXHAUSTED),
    "denied": (403, grpc.StatusCode.PERMISSION_DENIED),
    "unauthenticated": (401, grpc.StatusCode.UNAUTHENTICATED),
    "internal": (500, grpc.StatusCode.INTERNAL),
    "data_loss": (500, grpc.StatusCode.DATA_LOSS),
    "deadline": (504, grpc.StatusCode.DEADLINE_EXCEEDED),
}
ERROR_DOMAIN = "suanli.ledger"
PROBLEM_BASE = "https://suanli.localhost/problems/"

PROBLEM_MEDIA_TYPE = "application/problem+json"

# Written out rather than generated from a pydantic model: FastAPI puts a response model's
# schema under the route's own media type (application/json), and errors are never that.
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; reason, details and errors are extensions.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "a URI naming the kind of problem"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "what was wrong, for people"},
        "instance": {"type": "string", "description": "the request path"},
        "reason": {"type": "string", "description": "stable UPPER_SNAKE reason code"},
        "details": {"type": "object", "additionalProperties": {"type": "string"}},
        "errors": {
            "type": "array",
            "description": "every request validation error, when the request was malformed",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": "string"}},
                    "msg": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}

_STATUS_TEXT = {
    400: "Bad request: a parameter is malformed or out of range",
    401: "No valid bearer token",
    403: "The token's role may not do this",
    404: "Not found",
    409: "Conflict with what is already recorded",
    422: "Refused by the rules, or a cap is exhausted",
}


class ToolError(Exception):
    """Base of the errors the service's command-line tools raise on purpose (a log source
    that cannot be read, a step of the demo that failed, generated code that drifted);
    the ledger's own refusals are ``LedgerError``.

    ``exit_code`` is the ``suanli`` command's exit status for it (docs/cli.md) and
    ``hint`` what to do about it, shown after the one-line message."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigurationError(ToolError):
    """A setting the service cannot start with (a file it cannot read or parse)."""


class MessageTooLarge(LedgerError):
    """A request over the size the service accepts."""

    kind = "exhausted"
    reason = "MESSAGE_TOO_LARGE"


class DeadlinePassed(LedgerError):
    """The caller's deadline passed before its request reached the ledger; never applied."""

    kind = "deadline"
    reason = "DEADLINE_EXCEEDED"


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route whose errors are problem+json: these statuses, and "4XX"
    for any other client error (405, ...). Declaring "4XX" also keeps FastAPI from adding
    its 422 HTTPValidationError, which this app never sends."""
    declared: dict[int | str, dict[str, Any]] = {
        status: {
            "description": _STATUS_TEXT.get(status, "Error"),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}},
        }
        for status in statuses
    }
    declared["4XX"] = {
        "description": "Any other client error",
        "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}},
    }
    return declared


def http_status(error: LedgerError) -> int:
    return STATUS.get(error.kind, STATUS["invalid"])[0]


def grpc_code(error: LedgerError) -> grpc.StatusCode:
    return STATUS.get(error.kind, STATUS["invalid"])[1]


def problem(error: LedgerError, instance: str | None = None) -> dict[str, Any]:
    """RFC 9457 problem details for ``error``; ``reason`` and ``details`` are extensions."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + error.reason.lower().replace("_", "-"),
        "title": error.reason,
        "status": http_status(error),
        "detail": error.message,
        "reason": error.reason,
    }
    if error.details:
        body["details"] = error.details
    if instance:
        body["instance"] = instance
    return body
