"""The one mapping from ledger errors to HTTP statuses (RFC 9457 problem+json) and gRPC codes."""

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
    "internal": (500, grpc.StatusCode.DATA_LOSS),
}
ERROR_DOMAIN = "suanli.ledger"
PROBLEM_BASE = "https://suanli.localhost/problems/"


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
