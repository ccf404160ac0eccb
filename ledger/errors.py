"""One base exception for the ledger, and the few kinds every caller must tell apart.

Every refusal carries a machine-readable ``reason`` (UPPER_SNAKE, stable, used as the
gRPC ``ErrorInfo.reason`` and in the problem+json ``type``), a human message that says
what was wrong and what was expected, and ``details`` (string values only, so that they
fit ``ErrorInfo.metadata`` unchanged). The API layer maps ``kind`` to an HTTP status and
a gRPC status code in one place (``api/errors.py``).
"""

from __future__ import annotations

from collections.abc import Mapping


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose."""

    # invalid | not_found | conflict | precondition | exhausted | denied | unauthenticated |
    # internal | data_loss
    kind = "invalid"
    reason = "INVALID"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.details: dict[str, str] = {k: str(v) for k, v in (details or {}).items()}


class InvalidInput(LedgerError):
    """The request itself is malformed or out of range."""

    kind = "invalid"
    reason = "INVALID_ARGUMENT"


class NotFound(LedgerError):
    kind = "not_found"
    reason = "NOT_FOUND"


class Conflict(LedgerError):
    """The request contradicts something already recorded (e.g. an idempotency key reused)."""

    kind = "conflict"
    reason = "ALREADY_EXISTS"


class Refused(LedgerError):
    """Well formed, but the rules forbid it now (window closed, voucher suspended...)."""

    kind = "precondition"
    reason = "FAILED_PRECONDITION"


class CapExhausted(LedgerError):
    """Nothing is left under a cap; ``details['cap']`` names it."""

    kind = "exhausted"
    reason = "CAP_EXHAUSTED"


class Denied(LedgerError):
    """The caller may not do this (wrong role, wrong centre, bad signature)."""

    kind = "denied"
    reason = "PERMISSION_DENIED"


class VerificationError(LedgerError):
    """A proof, signature, checkpoint or log failed verification."""

    kind = "invalid"
    reason = "VERIFICATION_FAILED"


class Unauthenticated(LedgerError):
    """No valid credentials were presented."""

    kind = "unauthenticated"
    reason = "UNAUTHENTICATED"


class LogCorrupt(LedgerError):
    """Storage no longer holds what the log committed (a row missing or altered)."""

    kind = "data_loss"
    reason = "LOG_CORRUPT"


class InternalError(LedgerError):
    """A request failed by a bug, not by a rule. The caller gets only the error id; the
    server's log has the id with the whole exception, so that no internal text leaks."""

    kind = "internal"
    reason = "INTERNAL"

    def __init__(self, error_id: str) -> None:
        super().__init__(
            f"internal error {error_id}: the request was not recorded; "
            "the operators can find this id in the server log",
            details={"error_id": error_id},
        )
        self.error_id = error_id
