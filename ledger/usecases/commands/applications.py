"""Applications: submitted by an applicant, reviewed by its 区县, decided by the bureau."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger import applications, erasure
from ledger.policy import DEFAULT_POLICY, Programme, current_policy
from ledger.usecases.unit_of_work import Appended, UnitOfWork


def submit_application(
    uow: UnitOfWork,
    *,
    application: str,
    programme: str,
    applicant: str,
    inputs: Mapping[str, Any],
    materials: Mapping[str, str],
    attestations: Mapping[str, bool],
    round: str = DEFAULT_POLICY,
) -> Appended:
    """An application to a programme of ``round``'s policy in force, recorded by the
    service key: the inputs, the SHA-256 of each material, the attestations."""
    body = applications.submit_body(
        application=application,
        programme=programme,
        applicant=applicant,
        inputs=inputs,
        materials=materials,
        attestations=attestations,
        policy=current_policy(uow.state, round),
    )
    return uow.append(uow.sign("application.submit", body, uow.keys.service))


def review_application(
    uow: UnitOfWork,
    *,
    application: str,
    district: str,
    reviewer: str,
    opinion: str,
    note: str = "",
) -> Appended:
    """The opinion of the application's 区县 (``district``), recorded by the service key."""
    body = applications.review_body(
        application=application, district=district, reviewer=reviewer, opinion=opinion, note=note
    )
    return uow.append(uow.sign("application.review", body, uow.keys.service))


def decide_application(
    uow: UnitOfWork,
    *,
    application: str,
    decision: str,
    amount_fen: int | None = None,
    note: str = "",
) -> Appended:
    """The bureau's decision, signed by the issuer, under the round's policy in force. An
    approval without an amount approves the application's entitlement."""
    app = applications.application_of(uow.state, application)
    policy = current_policy(uow.state, app.round)
    if decision == "approve" and amount_fen is None:
        amount_fen = policy.programme(app.programme).entitlement(app.inputs)
    body = applications.decide_body(
        application=application, decision=decision, policy=policy, amount_fen=amount_fen, note=note
    )
    return uow.append(uow.sign("application.decide", body, uow.keys.issuer))


def declared_materials(programme: Programme, application: str) -> dict[str, str]:
    """Stand-in SHA-256 hashes of every required material (simulations and seeding)."""
    return {
        m.id: hashlib.sha256(f"{application}/{m.id}".encode()).hexdigest()
        for m in programme.materials
        if m.required
    }


def attest_all(programme: Programme) -> dict[str, bool]:
    """Every condition the programme asks applicants to attest, attested."""
    return {c.id: True for c in programme.conditions if c.attested}


@dataclass(frozen=True)
class Approval:
    """An application to take through the whole path at once (simulations, seeding, tests):
    submitted, approved by its 区县 and by the bureau."""

    application: str
    programme: str
    applicant: str
    inputs: Mapping[str, Any]
    amount_fen: int | None = None  # default: the entitlement
    materials: Mapping[str, str] | None = None  # default: a stand-in hash of each required
    attestations: Mapping[str, bool] | None = None  # default: every condition attested
    reviewer: str = "reviewer-1"
    round: str = DEFAULT_POLICY


def approve_application(uow: UnitOfWork, approval: Approval) -> Appended:
    """Submit, review and decide ``approval``'s application; returns the decision."""
    found = current_policy(uow.state, approval.round).programme(approval.programme)
    application, materials, attested = (
        approval.application,
        approval.materials,
        approval.attestations,
    )
    submit_application(
        uow,
        application=application,
        programme=approval.programme,
        applicant=approval.applicant,
        inputs=approval.inputs,
        materials=declared_materials(found, application) if materials is None else materials,
        attestations=attest_all(found) if attested is None else attested,
        round=approval.round,
    )
    district = applications.application_of(uow.state, application).district
    review_application(
        uow,
        application=application,
        district=district,
        reviewer=approval.reviewer,
        opinion="approve",
    )
    return decide_application(
        uow, application=application, decision="approve", amount_fen=approval.amount_fen
    )


def erase_application(uow: UnitOfWork, *, application: str, reason: str) -> Appended:
    """Delete a rejected application's personal data: the disclosures of its entries, by an
    ``erase`` entry the issuer signs (``ledger.erasure``); the log's leaves stay as they were."""
    body = erasure.erase_body(uow.state, application, reason)
    return uow.append(uow.sign("erase", body, uow.keys.issuer))
