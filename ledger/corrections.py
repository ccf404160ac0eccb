"""Corrections: nothing is edited; a correction is a new entry that points at what it corrects.

* ``claim.reverse`` (issuer) ``{centre, record_id, reason, evidence_sha256?}``: the claim
  (or capture) was wrong — undo it. Every cap it still counts against gets its amount back
  (voucher balance, entity and period caps, pools). The record id stays taken: a record,
  once claimed, is never claimed again (re-claim usage under a new record id if needed).
* ``clawback`` (issuer, 追回) ``{target: {"claim": {centre, record_id}} | {"grant": id},
  amount_fen, reason, evidence_sha256}``: part or all of a subsidy was improperly
  obtained and is recovered. The recorded subsidy is reduced by the amount, which goes
  back to the **budget** (the programme pool, the 算力券 pool, the programme tally), but
  stays counted against the **holder's** caps (voucher balance, period, entity caps) as a
  forfeit: an entity that must repay does not get to spend the same allowance again. At
  most the net subsidy can be clawed back; several clawbacks add up.
* ``entity.blacklist`` (issuer) ``{uscc, reason, evidence_sha256}``: the entity is
  blacklisted from now; every active voucher it holds is suspended (and marked suspended
  by the blacklist); new applications, approvals, issues and payments are refused.
* ``entity.unblacklist`` (issuer) ``{uscc, reason}``: lifts it and reinstates the vouchers
  the blacklisting suspended (not those suspended for other reasons).

The property every correction keeps (tests/test_corrections.py): every cap counter equals
the net subsidies and open holds counted against it, plus forfeits.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ledger import caps as caps_mod
from ledger import claims, entities, grants, reports, vouchers
from ledger.claims import claim_of
from ledger.entities import Blacklisting, entity_of
from ledger.entry import Entry
from ledger.errors import Conflict, InvalidInput, Refused
from ledger.grants import grant_of
from ledger.money import format_fen
from ledger.reader import Reader, body_reader
from ledger.state import Context, LedgerState, Result
from ledger.timeutil import local_text
from ledger.vouchers import set_status, vouchers_of

# --- reversal ----------------------------------------------------------------------------


def apply_reverse(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    r = body_reader(entry).obj(["centre", "record_id", "reason"], ["evidence_sha256"])
    claim = claim_of(state, r.text("centre", max_len=32), r.text("record_id", max_len=128))
    r.text("reason", max_len=1000)
    if r.has("evidence_sha256"):
        r.sha256("evidence_sha256")
    if claim.reversed_index is not None:
        raise Conflict(
            f"claim {claim.record_id} of {claim.centre} was already reversed at entry "
            f"{claim.reversed_index}",
            reason="ALREADY_REVERSED",
        )
    # mutate
    caps = caps_mod.book(state)
    caps.sweep(ctx.time)
    restored = caps.release(claim.charge_id)
    claims.book(state).put_claim(
        claim._replace(reversed_index=ctx.index, corrected_index=ctx.index)
    )
    reports.count_reversal(state, claim, ctx.index)
    return {"centre": claim.centre, "record_id": claim.record_id, "restored_fen": restored}


def reverse_body(
    *, centre: str, record_id: str, reason: str, evidence_sha256: str | None = None
) -> dict[str, Any]:
    """Body of ``claim.reverse``."""
    body: dict[str, Any] = {"centre": centre, "record_id": record_id, "reason": reason}
    if evidence_sha256 is not None:
        body["evidence_sha256"] = evidence_sha256
        Reader(body, "body").sha256("evidence_sha256")
    Reader(body, "body").obj(["centre", "record_id", "reason"], ["evidence_sha256"]).text("reason")
    return body


# --- clawback ----------------------------------------------------------------------------


def apply_clawback(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    r = body_reader(entry).obj(["target", "amount_fen", "reason", "evidence_sha256"])
    amount = r.fen("amount_fen")
    reason, evidence = r.text("reason", max_len=1000), r.sha256("evidence_sha256")
    target = r.child("target")
    target.obj([], ["claim", "grant"])
    if target.has("claim") == target.has("grant"):
        raise target.fail("names exactly one of claim or grant")
    if amount <= 0:
        raise r.fail("must be above 0", name="amount_fen")
    if target.has("claim"):
        cr = target.child("claim").obj(["centre", "record_id"])
        claim = claim_of(state, cr.text("centre", max_len=32), cr.text("record_id", max_len=128))
        if claim.reversed_index is not None:
            raise Refused(
                f"claim {claim.record_id} was reversed at entry {claim.reversed_index}; "
                "there is nothing to claw back",
                reason="ALREADY_REVERSED",
            )
        net, charge_id, what = (
            claim.net_fen,
            claim.charge_id,
            f"claim {claim.centre}/{claim.record_id}",
        )
    else:
        grant = grant_of(state, target.ident("grant"))
        net, charge_id, what = grant.net_fen, grant.charge_id, f"grant {grant.id}"
    if amount > net:
        raise Refused(
            f"clawback of {format_fen(amount)} exceeds the net subsidy {format_fen(net)} of {what}",
            reason="CLAWBACK_EXCEEDS_SUBSIDY",
            details={"amount_fen": amount, "net_fen": net},
        )
    # mutate
    caps = caps_mod.book(state)
    caps.sweep(ctx.time)
    caps.reduce(charge_id, amount, forfeit_id=f"forfeit:{ctx.index}")
    if target.has("claim"):
        clawed = claim.clawed_back_fen + amount
        claims.book(state).put_claim(
            claim._replace(clawed_back_fen=clawed, corrected_index=ctx.index)
        )
        reports.count_claim_clawback(state, claim, amount, ctx.index)
    else:
        grants.book(state).put(replace(grant, clawed_back_fen=grant.clawed_back_fen + amount))
        reports.count_grant_clawback(state, grant, amount, ctx.index)
    return {
        "target": what,
        "clawed_back_fen": amount,
        "net_fen": net - amount,
        "evidence_sha256": evidence,
        "reason": reason,
    }


def clawback_body(
    *,
    amount_fen: int,
    reason: str,
    evidence_sha256: str,
    claim: tuple[str, str] | None = None,
    grant: str | None = None,
) -> dict[str, Any]:
    """Body of ``clawback``: ``claim=(centre, record_id)`` or ``grant=grant_id``."""
    if (claim is None) == (grant is None):
        raise InvalidInput("a clawback targets exactly one claim or one grant")
    target: dict[str, Any] = (
        {"claim": {"centre": claim[0], "record_id": claim[1]}}
        if claim is not None
        else {"grant": grant}
    )
    body = {
        "target": target,
        "amount_fen": amount_fen,
        "reason": reason,
        "evidence_sha256": evidence_sha256,
    }
    r = Reader(body, "body").obj(["target", "amount_fen", "reason", "evidence_sha256"])
    r.fen("amount_fen")
    r.sha256("evidence_sha256")
    r.text("reason", max_len=1000)
    return body


# --- blacklisting ------------------------------------------------------------------------


def apply_blacklist(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    r = body_reader(entry).obj(["uscc", "reason", "evidence_sha256"])
    entity = entity_of(state, r.uscc("uscc"))
    reason, evidence = r.text("reason", max_len=1000), r.sha256("evidence_sha256")
    if entity.blacklisted is not None:
        raise Conflict(
            f"entity {entity.uscc} is already blacklisted since "
            f"{local_text(entity.blacklisted.since)}",
            reason="ALREADY_BLACKLISTED",
        )
    # mutate
    entities.book(state).put(
        replace(
            entity,
            blacklisted=Blacklisting(ctx.time, ctx.index, reason, evidence),
            blacklist_history=(*entity.blacklist_history, (ctx.index, "blacklist", reason)),
        )
    )
    suspended = []
    for voucher in vouchers_of(state, entity.uscc):
        if voucher.status == "active":
            changed = set_status(
                voucher, "suspended", ctx.index, "entity.blacklist", reason, evidence,
                by_blacklist=True,
            )  # fmt: skip
            vouchers.book(state).put(changed)
            suspended.append(voucher.id)
    return {"uscc": entity.uscc, "suspended": suspended}


def apply_unblacklist(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    r = body_reader(entry).obj(["uscc", "reason"])
    entity = entity_of(state, r.uscc("uscc"))
    reason = r.text("reason", max_len=1000)
    if entity.blacklisted is None:
        raise Conflict(f"entity {entity.uscc} is not blacklisted", reason="NOT_BLACKLISTED")
    # mutate
    entities.book(state).put(
        replace(
            entity,
            blacklisted=None,
            blacklist_history=(*entity.blacklist_history, (ctx.index, "unblacklist", reason)),
        )
    )
    reinstated = []
    for voucher in vouchers_of(state, entity.uscc):
        if voucher.status == "suspended" and voucher.suspended_by_blacklist:
            changed = set_status(voucher, "active", ctx.index, "entity.unblacklist", reason, None)
            vouchers.book(state).put(changed)
            reinstated.append(voucher.id)
    return {"uscc": entity.uscc, "reinstated": reinstated}


def blacklist_body(*, uscc: str, reason: str, evidence_sha256: str) -> dict[str, Any]:
    """Body of ``entity.blacklist``."""
    body = {"uscc": uscc, "reason": reason, "evidence_sha256": evidence_sha256}
    r = Reader(body, "body").obj(["uscc", "reason", "evidence_sha256"])
    r.uscc("uscc")
    r.sha256("evidence_sha256")
    r.text("reason", max_len=1000)
    return body


def unblacklist_body(*, uscc: str, reason: str) -> dict[str, Any]:
    """Body of ``entity.unblacklist``."""
    body = {"uscc": uscc, "reason": reason}
    r = Reader(body, "body").obj(["uscc", "reason"])
    r.uscc("uscc")
    r.text("reason", max_len=1000)
    return body
