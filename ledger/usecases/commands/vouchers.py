"""Vouchers and one-time grants: issued or paid on an approved application, by the issuer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TypedDict, Unpack

from ledger import applications, grants, vouchers
from ledger.policy import current_policy
from ledger.timeutil import parse_ledger_time
from ledger.usecases.commands.applications import Approval, approve_application
from ledger.usecases.commands.entities import NewEntity, register_entity
from ledger.usecases.unit_of_work import Appended, UnitOfWork

VOUCHER_ACTIONS = ("suspend", "reinstate", "revoke", "expire")


class VoucherTerms(TypedDict, total=False):
    """A voucher's terms, where not the defaults (``ledger.vouchers.issue_body``)."""

    face_value_fen: int | None
    usage_start: datetime | None
    usage_end: datetime | None
    valid_from: datetime | None
    valid_until: datetime | None
    centres: Sequence[str] | None


def issue_voucher(
    uow: UnitOfWork, *, application: str, voucher: str, **terms: Unpack[VoucherTerms]
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
        issued_at=parse_ledger_time(uow.now()),
        **terms,
    )
    return uow.append(uow.sign("voucher.issue", body, issuer))


def voucher_for(
    uow: UnitOfWork,
    approval: Approval,
    voucher: str,
    *,
    entity: NewEntity | None = None,
    **terms: Unpack[VoucherTerms],
) -> Appended:
    """The whole path to a voucher: the entity registered (if ``entity``), its application
    approved (``approve_application``) and the voucher issued. Returns the ``voucher.issue``
    entry."""
    if entity is not None:
        register_entity(uow, **asdict(entity))
    approve_application(uow, approval)
    return issue_voucher(uow, application=approval.application, voucher=voucher, **terms)


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
