"""The fold: ledger state is the log, applied entry by entry.

``apply`` is the single place where an entry's meaning is decided. The service runs it
before appending (a refusal raises and nothing is written) and the auditor runs the same
function over the whole log (a raise there means the log holds an entry the rules forbid).
It is deterministic: it reads no clock and no storage. Time comes from the entries: the
effective time of entry *i* is ``max(time_i, effective time of i-1)``, where ``time_i`` is
when the ledger logged it (``Entry.time``: its ``logged`` time, or its ``at`` when the
ledger recorded it as signed), so that expiry and windows never run backwards.

:data:`RULES` is the one list of entry kinds: for each, the roles whose keys may sign it
and the handler that checks and applies it. A new entry kind is a handler in its domain
module and a line here; nothing is registered by importing a module.
"""

from __future__ import annotations

from collections.abc import Mapping

from ledger import (
    applications,
    claims,
    corrections,
    entities,
    erasure,
    grants,
    policy,
    reimbursement,
    settlement,
    vouchers,
)
from ledger.disclosure import SD
from ledger.entry import Entry
from ledger.errors import InvalidInput
from ledger.publication import check_concealed
from ledger.registry import RegisteredKey
from ledger.state import Context, Handler, LedgerState, Result, Rule
from ledger.timeutil import parse_ledger_time

# --- the log's own entries: its key and the key registry ------------------------------------


def apply_genesis(state: LedgerState, entry: Entry, ctx: Context) -> None:
    state.edit_registry().genesis(entry, ctx.index)


def apply_rotate(state: LedgerState, entry: Entry, ctx: Context) -> None:
    state.edit_registry().rotate(entry, ctx.index)


def apply_key_register(state: LedgerState, entry: Entry, ctx: Context) -> None:
    state.edit_registry().register(entry, ctx.index)


def apply_key_retire(state: LedgerState, entry: Entry, ctx: Context) -> None:
    state.edit_registry().retire(entry, ctx.index)


def apply_note(state: LedgerState, entry: Entry, ctx: Context) -> None:
    """A signed remark in the log (an operator's annotation: maintenance, incident, notice)."""
    text = entry.body.get("text")
    if not isinstance(text, str) or not text or len(text) > 4000:
        raise InvalidInput("log.note: body.text must be a string of 1..4000 characters")


def _rule(handler: Handler, *roles: str) -> Rule:
    return Rule(frozenset(roles) if roles else None, handler)


_VOUCHER_STATUS = _rule(vouchers.apply_status_change, "issuer", "service")

RULES: Mapping[str, Rule] = {
    # the log and its keys (genesis and rotation authorise their signers themselves)
    "log.genesis": _rule(apply_genesis),
    "log.rotate": _rule(apply_rotate),
    "key.register": _rule(apply_key_register, "registry"),
    "key.retire": _rule(apply_key_retire, "registry"),
    "log.note": _rule(apply_note, "registry", "issuer", "service"),
    # the round: policy, centres, rate cards
    "policy.publish": _rule(policy.apply_publish, "issuer"),
    "centre.register": _rule(claims.apply_centre_register, "issuer"),
    "ratecard.publish": _rule(claims.apply_ratecard, "issuer"),
    # entities and applications
    "entity.register": _rule(entities.apply_register, "issuer", "service"),
    "entity.blacklist": _rule(corrections.apply_blacklist, "issuer"),
    "entity.unblacklist": _rule(corrections.apply_unblacklist, "issuer"),
    "application.submit": _rule(applications.apply_submit, "service"),
    "application.review": _rule(applications.apply_review, "service"),
    "application.decide": _rule(applications.apply_decide, "issuer"),
    "erase": _rule(erasure.apply_erase, "issuer"),
    # vouchers and grants
    "voucher.issue": _rule(vouchers.apply_issue, "issuer"),
    "voucher.suspend": _VOUCHER_STATUS,
    "voucher.reinstate": _VOUCHER_STATUS,
    "voucher.revoke": _VOUCHER_STATUS,
    "voucher.expire": _VOUCHER_STATUS,
    "grant.pay": _rule(grants.apply_pay, "issuer"),
    # post-hoc reimbursement (model B): claimed by the grantee, reviewed, decided, paid
    "reimbursement.submit": _rule(reimbursement.apply_submit, "service"),
    "reimbursement.review": _rule(reimbursement.apply_review, "service"),
    "reimbursement.decide": _rule(reimbursement.apply_decide, "issuer"),
    "reimbursement.pay": _rule(reimbursement.apply_pay, "issuer"),
    # redemption at the centres
    "claim": _rule(claims.apply_claim, "centre"),
    "hold": _rule(claims.apply_hold, "centre"),
    "capture": _rule(claims.apply_capture, "centre"),
    "void": _rule(claims.apply_void, "centre"),
    # corrections and settlement
    "claim.reverse": _rule(corrections.apply_reverse, "issuer"),
    "clawback": _rule(corrections.apply_clawback, "issuer"),
    "statement.open": _rule(settlement.apply_open, "log"),
    "statement.lines": _rule(settlement.apply_lines, "log"),
    "statement.close": _rule(settlement.apply_close, "log"),
}


def apply(state: LedgerState, entry: Entry, index: int | None = None) -> tuple[LedgerState, Result]:
    """Check ``entry`` against ``state`` and, if it is allowed, apply it as entry ``index``.

    Returns the state after the entry and the entry's result; raises a ``LedgerError`` if
    the rules refuse it. ``state`` itself never changes (the handler works on a draft).
    """
    index = state.size if index is None else index
    if index != state.size:
        raise InvalidInput(f"entry {index} applied to a state of size {state.size}")
    found = RULES.get(entry.kind)
    if found is None:
        raise InvalidInput(f"unknown entry kind {entry.kind!r}", reason="UNKNOWN_KIND")
    parse_ledger_time(entry.at)  # the author's time: well formed, in range
    at = parse_ledger_time(entry.time)  # the ledger's
    moment = at if state.time is None or at > state.time else state.time
    signers: tuple[RegisteredKey, ...] = ()
    if found.roles is not None:
        signers = tuple(state.registry.authorise(entry, index, found.roles))
    draft = state.draft()
    ctx = Context(index, moment, signers)
    if entry.erased_by is not None:  # a replay meets an entry whose disclosures were erased
        check_concealed(entry.kind, entry.body)
        erasure.apply_erased(draft, entry, ctx)
        return draft.seal(index + 1, moment), {}
    result = found.handle(draft, opened(entry), ctx) or {}
    return draft.seal(index + 1, moment), result


# The kinds every reader can replay from the public log alone: the log's own and its keys.
PUBLIC_KINDS = frozenset({"log.genesis", "log.rotate", "key.register", "key.retire", "log.note"})


def apply_public(state: LedgerState, entry: Entry, index: int) -> LedgerState:
    """What anyone can check of ``entry`` without its disclosures (the public audit): its
    time, that its signers may sign its kind, that it conceals what it must; and for the
    log's own entries (its keys), the whole rule. The other rules need what is concealed
    (``apply`` with disclosures decides them); the state keeps only the key registry."""
    if index != state.size:
        raise InvalidInput(f"entry {index} applied to a state of size {state.size}")
    found = RULES.get(entry.kind)
    if found is None:
        raise InvalidInput(f"unknown entry kind {entry.kind!r}", reason="UNKNOWN_KIND")
    check_concealed(entry.kind, entry.body)
    if entry.kind in PUBLIC_KINDS:
        return apply(state, entry, index)[0]
    parse_ledger_time(entry.at)
    at = parse_ledger_time(entry.time)
    moment = at if state.time is None or at > state.time else state.time
    if found.roles is not None:
        state.registry.authorise(entry, index, found.roles)
    return state.draft().seal(index + 1, moment)


def opened(entry: Entry) -> Entry:
    """The entry with its concealed members put back from its disclosures, for the rules
    (which decide on every member); the published body must show no restricted member in
    clear (``ledger.publication``) and every disclosure must match its digest."""
    check_concealed(entry.kind, entry.body)
    if (SD not in entry.body and not entry.disclosures) or entry.erased_by is not None:
        return entry  # nothing concealed, or nothing left to open
    return Entry(entry.kind, entry.at, entry.clear_body(), entry.sigs, entry.logged)
