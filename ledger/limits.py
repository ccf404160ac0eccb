"""The bounds every way in checks before a value reaches the fold, in one place.

A value outside its bound is refused at the edge (gRPC message, HTTP body, policy file,
``simulate`` line) with ``OUT_OF_RANGE`` naming the field, so that nothing the notice could
never produce — a quantity of 2^62 core-seconds, a cost of 10^15 yuan, a usage in year
9999 — travels further in. The bounds are generous: each is far above anything a real
centre, grantee or policy writes, and far below what could overflow the arithmetic the
ledger does on it (fen times basis points, quantities times prices, local dates).

Times have their own checks in ``ledger.timeutil`` (one form, years 2000..2099); this
module names them for the edges (:func:`check_time`).
"""

from __future__ import annotations

from datetime import datetime

from ledger.canonical import MAX_SAFE_INT
from ledger.errors import InvalidInput
from ledger.timeutil import parse_ledger_time

INT64_MAX = 2**63 - 1
UINT32_MAX = 2**32 - 1

MAX_FEN = 10**12
"""100 亿元 in fen: above any budget, cap, voucher or usage cost the notice can produce,
and small enough that an amount times 10,000 basis points stays JSON-safe (< 2^53)."""

MAX_QUANTITY = 10**15
"""Metered units (core-seconds, GPU-seconds, GB-hours): 10^15 core-seconds is 31 million
core-years, far beyond one job or one month of a centre, and a quantity times any rate
card price stays within int64."""

MAX_COUNT = 10**6
"""Counts in a policy's inputs and rules (months, racks, ranks, people)."""

MAX_INDEX = MAX_SAFE_INT
"""Log indices, sequence numbers and line numbers: JSON-safe."""

MAX_PAGE = 10_000
"""The most items one page of a list may ask for."""

MAX_CLAIMS_PER_MESSAGE = 1024
"""The most claims one ClaimStream request may carry: a signed claim takes about 400 bytes
(550 with the longest record id), so a full request stays well under the 1 MiB message
limit; and it is a quarter of the claims one stream may have unanswered (the server's
window), so a request never waits for room that only its own answers could make."""


def bound_of(name: str) -> tuple[int, int]:
    """The inclusive range a field called ``name`` may hold (its last dotted part decides):
    amounts ``*_fen``, ``quantity``, indices and pages; JSON-safe integers otherwise."""
    field = name.rsplit(".", 1)[-1]
    if field.endswith("_fen"):
        return -MAX_FEN, MAX_FEN
    if field == "quantity":
        return -MAX_QUANTITY, MAX_QUANTITY
    if field in ("limit", "max_lines"):
        return 0, MAX_PAGE
    if field.endswith("index") or field in ("seq", "after_line", "line"):
        return 0, MAX_INDEX
    return -MAX_SAFE_INT, MAX_SAFE_INT


def check_int(name: str, value: int) -> int:
    """``value`` if it lies within ``bound_of(name)``; else InvalidInput OUT_OF_RANGE that
    names the field and its bound. (The sign of an amount or quantity is the fold's to
    judge: it refuses a negative quantity as MALFORMED_QUANTITY, a negative cost as
    MALFORMED_COST.)"""
    low, high = bound_of(name)
    if not low <= value <= high:
        raise InvalidInput(
            f"{name} = {value} is out of range: it must lie within {low}..{high}",
            reason="OUT_OF_RANGE",
            details={"field": name, "minimum": low, "maximum": high},
        )
    return value


def check_time(name: str, text: str) -> datetime:
    """A time in the ledger's one form and years (``parse_ledger_time``); refused with
    MALFORMED_TIME or OUT_OF_RANGE naming the field."""
    try:
        return parse_ledger_time(text)
    except InvalidInput as exc:
        raise InvalidInput(
            f"{name}: {exc.message}", reason=exc.reason, details={"field": name}
        ) from None
