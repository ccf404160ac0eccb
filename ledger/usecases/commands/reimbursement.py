"""Post-hoc reimbursement (model B): the grantee claims, its 区县 reviews, the bureau decides
and records the payment (``ledger.reimbursement``, docs/reimbursement.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ledger import reimbursement
from ledger.policy import current_policy
from ledger.usecases.unit_of_work import Appended, UnitOfWork


def submit_reimbursement(
    uow: UnitOfWork,
    *,
    claim: str,
    round: str,
    programme: str,
    claimant: str,
    provider: Mapping[str, Any],
    period: tuple[str, str],
    amount_paid_fen: int,
    invoices: Sequence[Mapping[str, Any]],
    evidence: Mapping[str, str],
    related_parties: Sequence[str] = (),
) -> Appended:
    """A claim under ``round``'s policy in force, recorded by the service key: the
    documents' SHA-256 hashes as the grantee's client computed them."""
    body = reimbursement.submit_body(
        claim=claim,
        policy=current_policy(uow.state, round),
        programme=programme,
        claimant=claimant,
        provider=dict(provider),
        period=period,
        amount_paid_fen=amount_paid_fen,
        invoices=[dict(i) for i in invoices],
        evidence=dict(evidence),
        related_parties=list(related_parties),
    )
    return uow.append(uow.sign("reimbursement.submit", body, uow.keys.service))


def review_reimbursement(
    uow: UnitOfWork, *, claim: str, district: str, reviewer: str, opinion: str, note: str = ""
) -> Appended:
    """The opinion of the claimant's 区县 (``district``), recorded by the service key."""
    body = reimbursement.review_body(
        claim=claim, district=district, reviewer=reviewer, opinion=opinion, note=note
    )
    return uow.append(uow.sign("reimbursement.review", body, uow.keys.service))


def decide_reimbursement(
    uow: UnitOfWork,
    *,
    claim: str,
    decision: str,
    amount_fen: int | None = None,
    note: str = "",
) -> Appended:
    """The bureau's decision, signed by the issuer. An approval without an amount asks for
    the entitlement (the rate's share within the entity cap); the caps may cut it."""
    found = reimbursement.claim_of(uow.state, claim)
    body = reimbursement.decide_body(
        claim=claim,
        decision=decision,
        policy=current_policy(uow.state, found.round),
        amount_fen=amount_fen,
        note=note,
    )
    return uow.append(uow.sign("reimbursement.decide", body, uow.keys.issuer))


def pay_reimbursement(uow: UnitOfWork, *, claim: str) -> Appended:
    """Record the payment of an approved claim: its approved amount, once."""
    found = reimbursement.claim_of(uow.state, claim)
    body = reimbursement.pay_body(claim=claim, amount_fen=found.approved_fen)
    return uow.append(uow.sign("reimbursement.pay", body, uow.keys.issuer))
