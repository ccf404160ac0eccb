"""Vouchers and one-time grants: issued or paid on an approved application, by the issuer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger import applications, grants, vouchers
from ledger.policy import DEFAULT_POLICY, current_policy
from ledger.usecases.commands.applications import approve_application
from ledger.usecases.unit_of_work import Appended, UnitOfWork

VOUCHER_ACTIONS = ("suspend", "reinstate", "revoke", "expire")


def issue_voucher(
    uow: UnitOfWork,
    *,
    application: str,
    voucher: str,
    face_value_fen: int | None = None,
    usage_start: datetime | None = None,
    usage_end: datetime | None = None,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    centres: Sequence[str] | None = None,
) -> Appended:
    """Issue the voucher of an approved application: its credential (a JWS signed by the
    issuer key) is bound to the ``voucher.issue`` entry by the log index inside it.
    Terms not given come from the application and the policy (``vouchers.issue_body``)."""
    issuer = uow.keys.issuer
    body = vouchers.issue_body(
        uow.state,
        application=application,
        voucher=voucher,
        issuer=issuer,
        log_index=uow.state.size,
        face_value_fen=face_value_fen,
        usage_start=usage_start,
        usage_end=usage_end,
        valid_from=valid_from,
        valid_until=valid_until,
        centres=centres,
    )
    return uow.append(uow.sign("voucher.issue", body, issuer))


def change_voucher_status(
    uow: UnitOfWork,
    *,
    voucher: str,
    action: str,
    reason: str,
    evidence_sha256: str | None = None,
) -> Appended:
    """``voucher.suspend`` / ``reinstate`` / ``revoke`` / ``expire`` (``action``), by the issuer."""
    body = vouchers.status_body(voucher, reason, evidence_sha256)
    return uow.append(uow.sign(f"voucher.{action}", body, uow.keys.issuer))


def voucher_for(
    uow: UnitOfWork,
    *,
    applicant: str,
    application: str,
    voucher: str,
    programme: str,
    inputs: Mapping[str, Any],
    amount_fen: int | None = None,
    materials: Mapping[str, str] | None = None,
    attestations: Mapping[str, bool] | None = None,
    reviewer: str = "reviewer-1",
    round: str = DEFAULT_POLICY,
    **terms: Any,
) -> Appended:
    """The whole path to a voucher for a registered entity: its application submitted,
    approved by its 区县 and by the bureau (``approve_application``), and the voucher
    issued (``terms``: as ``issue_voucher``). Returns the ``voucher.issue`` entry."""
    approve_application(
        uow,
        application=application,
        programme=programme,
        applicant=applicant,
        inputs=inputs,
        amount_fen=amount_fen,
        materials=materials,
        attestations=attestations,
        reviewer=reviewer,
        round=round,
    )
    return issue_voucher(uow, application=application, voucher=voucher, **terms)


@dataclass(frozen=True)
class GrantPaid:
    entry: Appended
    calculated_fen: int  # what the programme's calculator gives for the application's inputs


def pay_grant(
    uow: UnitOfWork, *, application: str, grant: str, amount_fen: int | None = None
) -> GrantPaid:
    """Pay the one-time grant of an approved application: ``amount_fen`` (default: the
    approved amount), within every remaining cap (the result names the cap that bound it)."""
    app = applications.application_of(uow.state, application)
    policy = current_policy(uow.state, app.round)
    programme = policy.programme(app.programme)
    # computed first: nothing may raise after the append (a programme without a calculator
    # is no grant programme, which the fold refuses)
    calculated = grants.calculate(programme, app.inputs) if programme.calculator else 0
    body = grants.pay_body(
        grant=grant,
        application=application,
        amount_fen=app.approved_fen if amount_fen is None else amount_fen,
        policy_version=policy.version,
    )
    done = uow.append(uow.sign("grant.pay", body, uow.keys.issuer))
    return GrantPaid(done, calculated)
