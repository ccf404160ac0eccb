"""An entity's vouchers, balances and every cap that applies to it, by name.

What a grantee (and the bureau and auditors, for any entity) sees: each voucher with its
balance and what remains under each of its caps; every cap that applies to the entity
(voucher, period, entity_programme, entity_round, scheme_entity, programme_pool,
voucher_pool, scheme_pool) with its
limit, used, held and remaining; and which cap bound the entity's last claim. The shapes
are documented in docs/api-grantee.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ledger import caps as caps_mod
from ledger import claims, entities, grants, vouchers
from ledger.errors import NotFound
from ledger.policy import Policy, current_policy
from ledger.state import LedgerState
from ledger.timeutil import format_time, parse_time
from ledger.usecases.views import EntryReader, Snapshot, proof_link
from ledger.usecases.views.history import entity_history

SCOPES = {
    "voucher": "voucher",
    "period": "period",
    "entity_programme": "programme",
    "entity_round": "entity",
    "programme_pool": "pool",
    "voucher_pool": "pool",
    "scheme_entity": "entity",
    "scheme_pool": "pool",
}


def _policy_or_none(state: LedgerState, round_id: str) -> Policy | None:
    try:
        return current_policy(state, round_id)
    except NotFound:
        return None


def programme_label(state: LedgerState, round_id: str, programme: str) -> str:
    """``(四) 重大产业化项目…`` for people, or the id if the round does not know it."""
    policy = _policy_or_none(state, round_id)
    if policy is not None and programme in policy.programmes:
        found = policy.programmes[programme]
        return f"({found.number}) {found.title}"
    return programme


def cap_label(state: LedgerState, round_id: str, key: caps_mod.Key) -> str:
    """A cap's name for people, Chinese first: 凭证面值 V-1, 单位项目上限 (四) …, …"""
    name = str(key[0])
    policy = _policy_or_none(state, round_id)

    def programme(pid: object) -> str:
        return programme_label(state, round_id, str(pid))

    labels: dict[str, Callable[[], str]] = {
        "voucher": lambda: f"凭证面值 {key[1]}",
        "entity_programme": lambda: f"单位项目上限 {programme(key[2])}",
        "entity_round": lambda: f"单位跨项目年度上限 {key[3]}年",
        "programme_pool": lambda: f"项目资金池 {programme(key[2])} {key[3]}年",
        "scheme_entity": lambda: f"单位跨轮次年度上限 {key[1]} {key[3]}年",
        "scheme_pool": lambda: f"跨轮次年度资金池 {key[1]} {key[2]}年",
    }
    if name == "period" and len(key) == 3:  # voucher years: (period, voucher, n)
        return f"年度上限 {key[1]} 第{key[2]}年"
    if name == "period":  # calendar years: (period, round, programme, holder, year)
        return f"年度上限 {programme(key[2])} {key[4]}年"
    if name == "voucher_pool":
        pool = policy.voucher_pools.get(str(key[1])) if policy is not None else None
        return f"{pool.name if pool else key[1]} {key[2]}年"
    found = labels.get(name)
    return found() if found is not None else caps_mod.key_text(key)


def _voucher_lines(
    state: LedgerState, voucher: vouchers.Voucher, now: datetime
) -> tuple[caps_mod.CapLine, ...]:
    usage_at = min(max(now, voucher.usage_start), voucher.usage_end)
    lines, _ = vouchers.cap_lines(state, voucher, usage_at, now)
    return lines


def last_claim(state: LedgerState, held: Sequence[vouchers.Voucher]) -> dict[str, Any] | None:
    """The entity's latest claim and the key of the cap that bound it (None: the rate)."""
    book = claims.book(state)
    latest: claims.ClaimRecord | None = None
    for voucher in held:
        keys = book.by_voucher.get(voucher.id, ())
        if keys:
            record = book.claims[keys[-1]]
            if latest is None or record.index > latest.index:
                latest = record
    if latest is None:
        return None
    bound_by = str(latest.result.get("bound_by", ""))
    voucher = vouchers.voucher_of(state, latest.voucher)
    key = None
    if bound_by in caps_mod.CAP_ORDER:
        start = parse_time(latest.body["start"])
        lines, _ = vouchers.cap_lines(state, voucher, start, latest.at)
        key = next((caps_mod.key_text(x.key) for x in lines if x.name == bound_by), None)
    return {
        "index": latest.index,
        "at": format_time(latest.at),
        "centre": latest.centre,
        "record_id": latest.record_id,
        "voucher": latest.voucher,
        "subsidy_fen": latest.subsidy_fen,
        "bound_by": bound_by,
        "cap": key,
        "proof": proof_link(latest.index),
    }


def entity_caps(
    state: LedgerState, held: Sequence[vouchers.Voucher], now: datetime, binding: str | None
) -> list[dict[str, Any]]:
    """Every cap that applies to the entity's vouchers now, by name, narrowest first."""
    book = caps_mod.book(state)
    adjust = book.adjustments(now)
    found: dict[caps_mod.Key, dict[str, Any]] = {}
    for voucher in held:
        for line in _voucher_lines(state, voucher, now):
            if line.limit is None:
                continue
            row = found.get(line.key)
            if row is None:
                used = book.used.get(line.key, 0)
                on_hold = book.held.get(line.key, 0) - adjust.get(line.key, 0)
                name = caps_mod.key_text(line.key)
                row = found[line.key] = {
                    "name": name,
                    "cap": line.name,
                    "scope": SCOPES.get(line.name, line.name),
                    "label": cap_label(state, voucher.round, line.key),
                    "limit_fen": line.limit,
                    "used_fen": used,
                    "held_fen": on_hold,
                    "remaining_fen": max(0, line.limit - used - on_hold),
                    "binding": name == binding,
                    "vouchers": [],
                }
            row["vouchers"].append(voucher.id)
    return sorted(found.values(), key=lambda r: (caps_mod.CAP_ORDER.index(r["cap"]), r["name"]))


def voucher_summary(state: LedgerState, voucher: vouchers.Voucher, now: datetime) -> dict[str, Any]:
    """One voucher for its holder: balance, what is available to the next claim, caps."""
    view = vouchers.voucher_view(state, voucher.id, now)
    records = [
        claims.book(state).claims[k] for k in claims.book(state).by_voucher.get(voucher.id, [])
    ]
    remaining = dict(view["caps"])
    return {
        "id": voucher.id,
        "application": voucher.application,
        "round": voucher.round,
        "programme": voucher.programme,
        "programme_label": programme_label(state, voucher.round, voucher.programme),
        "holder": voucher.holder,
        "status": view["status"],
        "face_value_fen": voucher.face_value_fen,
        "used_fen": view["used_fen"],
        "held_fen": view["held_fen"],
        "balance_fen": view["balance_fen"],
        "available_fen": max(0, min(remaining.values(), default=0)),
        "rate_bp": voucher.rate_bp,
        "usage_start": view["usage_window"]["start"],
        "usage_end": view["usage_window"]["end"],
        "valid_from": view["valid"]["from"],
        "valid_until": view["valid"]["until"],
        "centres": list(voucher.centres),
        "caps": remaining,
        "last_bound_by": vouchers.book(state).last_bound_by.get(voucher.id),
        "claims": len(records),
        "subsidy_fen": sum(r.net_fen for r in records),
        "log_index": voucher.log_index,
        "proof": proof_link(voucher.log_index),
        "policy_version": voucher.policy_version,
        "credential": voucher.credential,
    }


def entity_summary(state: LedgerState, uscc: str) -> dict[str, Any]:
    """The entity as the grantee pages name it (nulls while it is not registered)."""
    found = entities.book(state).entities.get(uscc)
    if found is None:
        return {"uscc": uscc, "name": None, "type": None, "district": None, "blacklisted": False}
    return {
        "uscc": uscc,
        "name": found.name,
        "type": found.type,
        "district": found.district,
        "blacklisted": found.blacklisted is not None,
    }


def entity_vouchers(snapshot: Snapshot, uscc: str) -> dict[str, Any]:
    """The entity's vouchers, every cap that applies to it, its last claim and totals."""
    state, now = snapshot.state, snapshot.now
    held = list(vouchers.vouchers_of(state, uscc))
    last = last_claim(state, held)
    binding = last["cap"] if last else None
    out = [voucher_summary(state, v, now) for v in held]
    paid = [g for g in grants.book(state).grants.values() if g.payee == uscc]
    return {
        "size": state.size,
        "as_of": format_time(now),
        "entity": entity_summary(state, uscc),
        "vouchers": out,
        "caps": entity_caps(state, held, now, binding),
        "last_binding_cap": binding,
        "last_claim": last,
        "totals": {
            **_sums(out, ("face_value_fen", "used_fen", "held_fen", "balance_fen", "subsidy_fen")),
            "grants_fen": sum(g.net_fen for g in paid),
        },
    }


def _sums(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, int]:
    return {k: sum(int(r[k]) for r in rows) for k in keys}


def voucher_detail(
    snapshot: Snapshot, uscc: str, voucher_id: str, entries: EntryReader
) -> dict[str, Any]:
    """One of the entity's vouchers: its summary, its caps and its claims (with their
    corrections); another entity's voucher is not found, like a missing one."""
    state, now = snapshot.state, snapshot.now
    found = vouchers.book(state).vouchers.get(voucher_id)
    if found is None or found.holder != uscc:
        raise NotFound(
            f"entity {uscc} holds no voucher {voucher_id!r}",
            reason="UNKNOWN_VOUCHER",
            details={"voucher": voucher_id},
        )
    out = voucher_summary(state, found, now)
    last = last_claim(state, [found])
    out["cap_list"] = entity_caps(state, [found], now, last["cap"] if last else None)
    history = entity_history(state, uscc, entries)
    out["claim_list"] = [i for i in history if i["voucher"] == voucher_id]
    out["size"] = state.size
    return out


def entity_list(state: LedgerState, district: str | None = None) -> list[dict[str, Any]]:
    """Registered entities (``entities.entity_view``) by 统一社会信用代码, of one 区县 if given."""
    return [
        entities.entity_view(state, uscc)
        for uscc, entity in sorted(entities.book(state).entities.items())
        if district is None or entity.district == district
    ]
