"""Corrections: a wrong claim reversed, a subsidy clawed back (追回), by the issuer."""

from __future__ import annotations

from ledger import corrections
from ledger.usecases.unit_of_work import Appended, UnitOfWork


def reverse_claim(
    uow: UnitOfWork,
    *,
    centre: str,
    record_id: str,
    reason: str,
    evidence_sha256: str | None = None,
) -> Appended:
    """Reverse a claim: every cap it counts against gets its amount back; the record id
    stays taken."""
    body = corrections.reverse_body(
        centre=centre, record_id=record_id, reason=reason, evidence_sha256=evidence_sha256
    )
    return uow.append(uow.sign("claim.reverse", body, uow.keys.issuer))


def claw_back(
    uow: UnitOfWork,
    *,
    amount_fen: int,
    reason: str,
    evidence_sha256: str,
    claim: tuple[str, str] | None = None,
    grant: str | None = None,
) -> Appended:
    """Recover part or all of a claim's (``(centre, record_id)``) or a grant's subsidy."""
    body = corrections.clawback_body(
        amount_fen=amount_fen,
        reason=reason,
        evidence_sha256=evidence_sha256,
        claim=claim,
        grant=grant,
    )
    return uow.append(uow.sign("clawback", body, uow.keys.issuer))
