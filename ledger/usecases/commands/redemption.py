"""Redemption at the centres: claim, hold, capture and void, each exactly once.

A centre sends an entry it signed itself (``claim``, ``hold``, ``capture`` or ``void``).
Every rule is the fold's, decided when the entry is appended; what is decided here is
what makes a write exactly-once and timely:

* **The signed time.** With a ``tolerance``, the entry's ``at`` must be within that many
  seconds of the service clock (``CLOCK_SKEW``; ``MALFORMED_TIME`` if it is no time).
* **Retries.** A claim or capture is known by (centre, record id), a hold or void by
  (centre, hold id). A retry with the first body gets the first answer again
  (``replayed``) and appends nothing; another body is refused (``ALREADY_CLAIMED``,
  ``HOLD_EXISTS``) naming each field that differs (``diff.<field>`` details). A retry is
  answered only if its signers may sign that kind of entry (checked by the key registry
  as the fold checks them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledger import claims, vouchers
from ledger.entry import Entry
from ledger.errors import Conflict, InvalidInput, LedgerError, Refused
from ledger.fold import RULES, opened
from ledger.registry import verify_entry_signatures
from ledger.state import LedgerState
from ledger.timeutil import format_time, parse_ledger_time, parse_time
from ledger.usecases.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class SignedWrite:
    """A centre's entry as it arrives: signed by the centre; ``tolerance``: how many seconds
    its signed time may be from the service clock (None: not checked);
    ``signatures_checked``: its signatures were verified already (at the edge)."""

    entry: Entry
    tolerance: float | None = None
    signatures_checked: bool = False


@dataclass(frozen=True)
class Redeemed:
    """What the ledger decided: the entry's log index, kind, body and result.

    ``at`` is the entry's effective time in the ledger (its signed time, or the time of the
    entry before it if that is later). ``replayed`` marks a first answer given again.
    """

    index: int
    kind: str
    body: Mapping[str, Any]
    result: Mapping[str, Any]
    at: str
    replayed: bool = False


def check_signed_time(entry: Entry, now: datetime, tolerance: float) -> None:
    """``entry.at`` must be a time within ``tolerance`` seconds of ``now``."""
    try:
        signed_at = parse_ledger_time(entry.at)
    except InvalidInput as exc:
        raise InvalidInput(
            f"at: {exc.message}", reason="MALFORMED_TIME", details={"field": "at"}
        ) from exc
    skew = (signed_at - now).total_seconds()
    if abs(skew) > tolerance:
        raise Refused(
            f"the {entry.kind} was signed at {entry.at}, {skew:+.0f} s from the service clock "
            f"({now.isoformat()}); at most ±{tolerance:.0f} s is accepted: sign it now",
            reason="CLOCK_SKEW",
            details={"skew_seconds": f"{skew:.3f}", "tolerance_seconds": f"{tolerance:.0f}"},
        )


def claim(uow: UnitOfWork, write: SignedWrite) -> Redeemed:
    """A claim or a capture, exactly once per (centre, record id). Bodies are compared as
    opened (a retry conceals its members with new salts, so its published body differs)."""
    entry = opened(write.entry)
    _check_time(uow, write)
    state = uow.state
    centre, record_id = str(entry.body.get("centre")), str(entry.body.get("record_id"))
    first = claims.book(state).claims.get((centre, record_id))
    if first is None:
        return _append(uow, write, entry)
    _authorise_retry(state, write)
    if dict(first.body) != dict(entry.body):
        where = f"record {centre}/{record_id}"
        raise _conflict("ALREADY_CLAIMED", where, first.index, first.body, entry.body)
    at = format_time(first.at)
    return Redeemed(first.index, first.kind, dict(first.body), dict(first.result), at, True)


def hold(uow: UnitOfWork, write: SignedWrite) -> Redeemed:
    """A hold, exactly once per (centre, hold id): a retry gets the hold as it is now. The
    answer adds the voucher's rate (``rate_bp``)."""
    entry = write.entry
    _check_time(uow, write)
    centre, hold_id = str(entry.body.get("centre")), str(entry.body.get("hold_id"))
    found = claims.book(uow.state).holds.get((centre, hold_id))
    if found is None:
        done = _append(uow, write)
        rate = vouchers.voucher_of(uow.state, str(entry.body["voucher"])).rate_bp
        return Redeemed(done.index, done.kind, done.body, {**done.result, "rate_bp": rate}, done.at)
    state = uow.state
    _authorise_retry(state, write)
    first = {
        "centre": found.centre,
        "hold_id": found.hold_id,
        "voucher": found.voucher,
        "estimated_cost_fen": found.estimated_cost_fen,
        "expires_at": format_time(found.expires_at),
    }
    now = dict(entry.body)
    with suppress(InvalidInput, KeyError):  # the same time written another way is the same
        now["expires_at"] = format_time(parse_time(str(now["expires_at"])))
    if first != now:
        raise _conflict("HOLD_EXISTS", f"hold {centre}/{hold_id}", found.index, first, now)
    view = claims.hold_view(state, centre, hold_id)
    view["rate_bp"] = vouchers.voucher_of(state, found.voucher).rate_bp
    return Redeemed(found.index, "hold", first, view, format_time(found.at), True)


def void(uow: UnitOfWork, write: SignedWrite) -> Redeemed:
    """A void; voiding a hold this centre already voided answers that void again."""
    entry = write.entry
    _check_time(uow, write)
    centre, hold_id = str(entry.body.get("centre")), str(entry.body.get("hold_id"))
    found = claims.book(uow.state).holds.get((centre, hold_id))
    if found is None or found.status != "voided" or found.closed_index is None:
        return _append(uow, write)
    _authorise_retry(uow.state, write)
    result = {"hold_id": hold_id, "released_fen": found.amount_fen}
    return Redeemed(found.closed_index, "void", dict(entry.body), result, "", True)


Redeem = Callable[..., Redeemed]
REDEEM: Mapping[str, Redeem] = {"claim": claim, "capture": claim, "hold": hold, "void": void}


def redeem(uow: UnitOfWork, write: SignedWrite) -> Redeemed:
    """Any of the centres' writes, by its kind."""
    found = REDEEM.get(write.entry.kind)
    if found is None:
        raise InvalidInput(f"{write.entry.kind!r} is not a centre's write", reason="UNKNOWN_KIND")
    return found(uow, write)


def claim_each(uow: UnitOfWork, writes: Sequence[SignedWrite]) -> list[Redeemed | LedgerError]:
    """Many claims, each decided on its own: a refusal is that claim's answer and changes
    nothing, and the claims after it go on."""
    answers: list[Redeemed | LedgerError] = []
    for write in writes:
        try:
            answers.append(claim(uow, write))
        except LedgerError as refusal:
            answers.append(refusal)
    return answers


# --- helpers ---------------------------------------------------------------------------------


def _check_time(uow: UnitOfWork, write: SignedWrite) -> None:
    if write.tolerance is not None:
        check_signed_time(write.entry, uow.clock_now().astimezone(UTC), write.tolerance)


def _append(uow: UnitOfWork, write: SignedWrite, entry: Entry | None = None) -> Redeemed:
    """Append the write; its answer. ``entry``: the write's entry opened, if the caller has
    it already."""
    done = uow.append(write.entry, signatures_checked=write.signatures_checked)
    entry = opened(write.entry) if entry is None else entry
    at = uow.state.time
    effective = format_time(at) if at is not None else entry.at
    return Redeemed(done.index, entry.kind, entry.body, done.result, effective)


def _authorise_retry(state: LedgerState, write: SignedWrite) -> None:
    """A retry is answered only if its signers may sign its kind now (the registry's rule)
    and their signatures verify."""
    entry = write.entry
    if not write.signatures_checked:
        verify_entry_signatures(state.registry, entry)
    roles = RULES[entry.kind].roles
    if roles is not None:
        state.registry.authorise(entry, state.size, roles)


def _conflict(
    reason: str, what: str, index: int, first: Mapping[str, Any], now: Mapping[str, Any]
) -> Conflict:
    """The idempotency key was used before with another body: name what differs."""
    diff = {
        name: f"{first.get(name)!r} -> {now.get(name)!r}"
        for name in sorted(set(first) | set(now))
        if first.get(name) != now.get(name)
    }
    changed = "; ".join(f"{k}: {v}" for k, v in diff.items())
    return Conflict(
        f"{what} was already recorded at log index {index} with a different body ({changed}); "
        "a retry must repeat the first body exactly",
        reason=reason,
        details={"log_index": index, **{f"diff.{k}": v for k, v in diff.items()}},
    )
