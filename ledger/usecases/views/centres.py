"""What a centre sees: a voucher checked for use at the centre, its balance and caps, the
centre's own claims, and its settlement statements. Another centre's statement is not
found, like a missing one."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ledger import claims, credential, providers, settlement, vouchers
from ledger.claims import _check_voucher as check_voucher_at_centre
from ledger.errors import InvalidInput, LedgerError, NotFound, VerificationError
from ledger.seq import Seq
from ledger.state import LedgerState
from ledger.timeutil import format_time
from ledger.usecases.commands.redemption import Redeemed


def voucher_check(
    state: LedgerState, voucher_id: str, centre: str, now: datetime
) -> dict[str, Any]:
    """A voucher's terms and whether ``centre`` may redeem it now (``usable``; if not,
    ``reason`` says why, as a claim would be refused)."""
    voucher = vouchers.voucher_of(state, voucher_id)
    view = vouchers.voucher_view(state, voucher_id, now)
    try:
        check_voucher_at_centre(state, voucher, centre, now)
    except LedgerError as why:
        usable, reason = False, why.reason
    else:
        usable, reason = True, ""
    return {
        "voucher": voucher.id,
        "holder": voucher.holder,
        "programme": voucher.programme,
        "status": view["status"],
        "face_value_fen": voucher.face_value_fen,
        "balance_fen": view["balance_fen"],
        "rate_bp": voucher.rate_bp,
        "valid_from": format_time(voucher.valid_from),
        "valid_until": format_time(voucher.valid_until),
        "usage_start": format_time(voucher.usage_start),
        "usage_end": format_time(voucher.usage_end),
        "accepted_centres": list(voucher.centres),
        "issuer_key_id": voucher.issuer_key,
        "log_index": voucher.log_index,
        "usable": usable,
        "reason": reason,
    }


def verify_credential(state: LedgerState, voucher_id: str, token: str) -> None:
    """``token`` must be the voucher's credential, verified with its issuer's key as the
    log registered it (``BAD_CREDENTIAL`` otherwise)."""
    voucher = vouchers.voucher_of(state, voucher_id)
    try:
        issuer = state.registry.get(voucher.issuer_key)
        payload = credential.verify_voucher(token, issuer.verifier)
    except (VerificationError, NotFound) as exc:
        raise InvalidInput(
            f"the credential does not verify with issuer key {voucher.issuer_key}: {exc}",
            reason="BAD_CREDENTIAL",
        ) from None
    if payload.get("voucher") != voucher.id or token != voucher.credential:
        raise InvalidInput(
            f"the credential is not the one issued for voucher {voucher.id}",
            reason="BAD_CREDENTIAL",
        )


def balance(state: LedgerState, voucher_id: str, centre: str, now: datetime) -> dict[str, Any]:
    """A voucher's balance and what remains under each cap, for a centre that accepts it
    (``CENTRE_NOT_ACCEPTED`` otherwise). ``caps`` are (name, limit, remaining), the
    smallest remaining first; ``available_fen`` is the most the next claim can get."""
    voucher = vouchers.voucher_of(state, voucher_id)
    if not providers.accepts(voucher.centres, centre):
        # the same refusal a claim gets (status checks aside: a balance is shown anyway)
        check_voucher_at_centre(state, voucher, centre, now)
    view = vouchers.voucher_view(state, voucher_id, now)
    usage_at = min(max(now, voucher.usage_start), voucher.usage_end)
    lines, _ = vouchers.cap_lines(state, voucher, usage_at, now)
    limits = {line.name: line.limit for line in lines if line.limit is not None}
    caps = sorted(view["caps"].items(), key=lambda item: (item[1], item[0]))
    return {
        "voucher": voucher.id,
        "face_value_fen": voucher.face_value_fen,
        "balance_fen": voucher.face_value_fen - view["used_fen"],
        "held_fen": view["held_fen"],
        "available_fen": min((rem for _, rem in caps), default=0),
        "log_size": state.size,
        "caps": [(name, limits.get(name, 0), remaining) for name, remaining in caps],
    }


def centre_claims(
    state: LedgerState, centre: str, *, voucher: str = "", from_index: int = 0, limit: int = 0
) -> list[Redeemed]:
    """The centre's own claims and captures in log order, from ``from_index``, of one
    voucher if given, at most ``limit`` (0: all).

    A centre's page costs O(log n + the page): its record ids are kept in log order, so the
    first at or after ``from_index`` is found by bisection (a centre reconciling a year of
    10^6 claims pages through them; walking every claim of the ledger took a second a page)."""
    book = claims.book(state)
    if voucher:
        keys = [k for k in book.by_voucher.get(voucher, []) if k[0] == centre]
        listed = sorted((book.claims[k] for k in keys), key=lambda r: r.index)
        chosen = [r for r in listed if r.index >= from_index]
        chosen = chosen[:limit] if limit else chosen
    else:
        ids = book.by_centre.get(centre, Seq())
        start = bisect_left(ids, from_index, key=lambda rid: book.claims[(centre, rid)].index)
        end = min(len(ids), start + limit) if limit else len(ids)
        chosen = [book.claims[(centre, rid)] for rid in ids[start:end]]
    return [
        Redeemed(r.index, r.kind, dict(r.body), dict(r.result), format_time(r.at)) for r in chosen
    ]


def centre_statement(state: LedgerState, centre: str, statement_id: str) -> settlement.Statement:
    """One of the centre's statements (another centre's is not found, like a missing one)."""
    found = settlement.book(state).statements.get(statement_id)
    if found is not None and found.centre == centre:
        return found
    missing = f"no settlement statement {statement_id!r} for centre {centre}"
    raise NotFound(missing, reason="UNKNOWN_STATEMENT", details={"statement_id": statement_id})


def centre_statements(
    state: LedgerState, centre: str, period: str = ""
) -> list[settlement.Statement]:
    """The centre's statements in log order, of one period if given."""
    book = settlement.book(state)
    listed = [book.statements[s] for s in book.by_centre.get(centre, ())]
    return [s for s in listed if not period or s.period.text == period]


def released_on_capture(result: Mapping[str, Any]) -> int:
    """What a capture gave back of its hold: held minus the subsidy (never below 0)."""
    return max(0, int(result.get("held_fen", 0)) - int(result.get("subsidy_fen", 0)))


def rate_cards(
    state: LedgerState, centre: str, *, after_version: int = 0, limit: int = 100
) -> dict[str, Any]:
    """A page of the centre's rate cards as published (``ratecard.publish``), oldest first:
    the prices the ledger checks its claims' ``cost_fen`` against. ``next_after`` is the
    cursor of the next page (None on the last)."""
    cards = [c for c in claims.centre_of(state, centre).rate_cards if c.version > after_version]
    page = cards[:limit]
    return {
        "centre": centre,
        "rate_cards": [
            {
                "centre": card.centre,
                "version": card.version,
                "effective_from": format_time(card.effective_from),
                "prices": {
                    resource: {"price_fen": price.price_fen, "per_units": price.per_units}
                    for resource, price in sorted(card.prices.items())
                },
                "index": card.index,
            }
            for card in page
        ],
        "next_after": page[-1].version if len(cards) > limit else None,
    }


def centre_roster(state: LedgerState, *, after: str = "", limit: int = 100) -> dict[str, Any]:
    """The centres the log knows, in id order after ``after``, at most ``limit``, each with
    its keys (active or retired): what ``suanli centres list`` shows. ``next`` is the
    cursor of the next page ("" at the end)."""
    book = claims.book(state)
    ids = sorted(c for c in book.centres if c > after)
    page, more = ids[:limit], len(ids) > limit
    rows = []
    for centre_id in page:
        centre = book.centres[centre_id]
        keys = [k for k in state.registry.keys.values() if k.centre == centre_id]
        rows.append(
            {
                "centre": centre_id,
                "name": centre.name,
                "kind": centre.kind,
                "rate_cards": len(centre.rate_cards),
                "keys": [
                    {
                        "key_id": k.verifier.key_id,
                        "from_index": k.from_index,
                        "until_index": k.until_index,
                        "active": k.until_index is None,
                    }
                    for k in sorted(keys, key=lambda k: k.from_index)
                ],
            }
        )
    return {"centres": rows, "next": page[-1] if more and page else ""}
