"""Who may open an entry's concealed members (docs/publication.md), decided from the state.

The bureau and auditors may open every entry's. Besides them: an entity may open what
concerns it (its registration, its applications, its vouchers' claims and corrections), the
reviewer of its 区县 what it submitted for review, and a centre what it metered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ledger import applications, claims, entities, grants, reimbursement, vouchers
from ledger.entry import Entry
from ledger.fold import opened
from ledger.publication import Audience
from ledger.state import LedgerState


def _holder(state: LedgerState, voucher: Any) -> str | None:
    found = vouchers.book(state).vouchers.get(str(voucher))
    return None if found is None else found.holder


def _application(state: LedgerState, body: Mapping[str, Any]) -> Audience:
    found = applications.book(state).applications.get(str(body.get("application")))
    if found is None:
        return Audience()
    return Audience.of([found.applicant], [found.district])


def _reimbursement(state: LedgerState, body: Mapping[str, Any]) -> Audience:
    found = reimbursement.book(state).claims.get(str(body.get("claim")))
    if found is None:  # the submission itself, before the fold has it
        return Audience.of([body.get("claimant")])
    return Audience.of([found.claimant], [found.district])


def _claim(state: LedgerState, centre: Any, record_id: Any) -> Audience:
    found = claims.book(state).claims.get((str(centre), str(record_id)))
    holder = None if found is None else _holder(state, found.voucher)
    return Audience.of([holder], centres=[str(centre)])


def _hold_holder(state: LedgerState, centre: Any, hold_id: Any) -> str | None:
    hold = claims.book(state).holds.get((str(centre), str(hold_id)))
    return None if hold is None else _holder(state, hold.voucher)


def _clawback(state: LedgerState, target: Any) -> Audience:
    if not isinstance(target, dict):
        return Audience()
    if isinstance(target.get("claim"), dict):
        return _claim(state, target["claim"].get("centre"), target["claim"].get("record_id"))
    grant = grants.book(state).grants.get(str(target.get("grant")))
    return Audience.of([None if grant is None else grant.payee])


def _entity(state: LedgerState, body: Mapping[str, Any]) -> Audience:
    return Audience.of([body.get("uscc")], [body.get("district")])


def _blacklisted(state: LedgerState, body: Mapping[str, Any]) -> Audience:
    found = entities.book(state).entities.get(str(body.get("uscc")))
    return Audience.of([None if found is None else found.uscc])


def _voucher(state: LedgerState, body: Mapping[str, Any]) -> Audience:
    return Audience.of([_holder(state, body.get("voucher"))])


def _claimed(state: LedgerState, body: Mapping[str, Any]) -> Audience:
    return Audience.of([_holder(state, body.get("voucher"))], centres=[body.get("centre")])


def _captured(state: LedgerState, body: Mapping[str, Any]) -> Audience:
    holder = _hold_holder(state, body.get("centre"), body.get("hold_id"))
    return Audience.of([holder], centres=[body.get("centre")])


def _reversed(state: LedgerState, body: Mapping[str, Any]) -> Audience:
    return _claim(state, body.get("centre"), body.get("record_id"))


def _clawed_back(state: LedgerState, body: Mapping[str, Any]) -> Audience:
    return _clawback(state, body.get("target"))


_BY_KIND = {
    "entity.register": _entity,
    "entity.blacklist": _blacklisted,
    "entity.unblacklist": _blacklisted,
    "claim": _claimed,
    "capture": _captured,
    "claim.reverse": _reversed,
    "clawback": _clawed_back,
}


def audience(state: LedgerState, entry: Entry) -> Audience:
    """Who besides the bureau and auditors may open ``entry``'s concealed members (its
    disclosures must be beside it: the service has them all)."""
    body, kind = opened(entry).body, entry.kind
    if kind.startswith("application."):
        return _application(state, body)
    if kind.startswith("voucher."):
        return _voucher(state, body)
    if kind.startswith("reimbursement."):
        return _reimbursement(state, body)
    found = _BY_KIND.get(kind)
    return Audience() if found is None else found(state, body)
