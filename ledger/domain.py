"""The subsidy domain in one import: ``import ledger.domain`` registers every rule.

Where each thing lives (one module per thing, each owning its state part, its rules, the
builders of its entry bodies and its read-side views):

=================== ================================================ =====================
module              entry kinds                                      state part
=================== ================================================ =====================
ledger.policy       policy.publish                                   ``policy``
ledger.entities     entity.register                                  ``entities``
ledger.applications application.submit / .review / .decide          ``applications``
ledger.vouchers     voucher.issue / .suspend / .reinstate /          ``vouchers``
                    .revoke / .expire
ledger.claims       centre.register, ratecard.publish, claim, hold,  ``claims``
                    capture, void
ledger.grants       grant.pay                                        ``grants``
ledger.corrections  claim.reverse, clawback, entity.blacklist /      (the parts above)
                    .unblacklist
ledger.caps         (cap arithmetic and counters for all of them)    ``caps``
ledger.settlement   statement.issue (signed by the log key)          ``settlement``
=================== ================================================ =====================

:data:`BUILDERS` maps each kind to the function that makes its body from typed arguments,
so that the HTTP and gRPC layers never write entry JSON by hand. The service signs the
entry and appends it; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger import (
    applications,
    claims,
    corrections,
    entities,
    grants,
    policy,
    settlement,
    vouchers,
)
from ledger.caps import programme_budget
from ledger.state import RULES, LedgerState

BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "policy.publish": policy.publish_body,
    "entity.register": entities.register_body,
    "entity.blacklist": corrections.blacklist_body,
    "entity.unblacklist": corrections.unblacklist_body,
    "application.submit": applications.submit_body,
    "application.review": applications.review_body,
    "application.decide": applications.decide_body,
    "voucher.issue": vouchers.issue_body,
    "voucher.suspend": vouchers.status_body,
    "voucher.reinstate": vouchers.status_body,
    "voucher.revoke": vouchers.status_body,
    "voucher.expire": vouchers.status_body,
    "centre.register": claims.centre_body,
    "ratecard.publish": claims.ratecard_body,
    "claim": claims.claim_body,
    "hold": claims.hold_body,
    "capture": claims.capture_body,
    "void": claims.void_body,
    "grant.pay": grants.pay_body,
    "claim.reverse": corrections.reverse_body,
    "clawback": corrections.clawback_body,
    "statement.issue": settlement.statement_body,
}

DOMAIN_KINDS = tuple(BUILDERS)

VIEWS: dict[str, Callable[..., Any]] = {
    "current_policy": policy.current_policy,
    "entity_view": entities.entity_view,
    "application_view": applications.application_view,
    "applications_of": applications.applications_of,
    "applications_in_district": applications.applications_in_district,
    "voucher_view": vouchers.voucher_view,
    "entity_vouchers": vouchers.entity_vouchers,
    "lookup_claim": claims.lookup_claim,
    "claim_view": claims.claim_view,
    "claims_of_voucher": claims.claims_of_voucher,
    "claims_of_centre": claims.claims_of_centre,
    "hold_view": claims.hold_view,
    "rate_card_view": claims.rate_card_view,
    "grant_view": grants.grant_view,
    "programme_budget": programme_budget,
}


def check_registered() -> None:
    """Raise if a domain kind has no rule (a module failed to register)."""
    missing = [k for k in DOMAIN_KINDS if k not in RULES]
    if missing:
        raise RuntimeError(f"no rule for {missing}")


def new_state() -> LedgerState:
    return LedgerState()


check_registered()
