"""The bounds a usage record meets before it enters the outbox: the ledger's own.

Every parser checks its records here, so a value the ledger would refuse (a time outside
2000-01-01..2100-01-01, a quantity or a cost beyond what a signed body can carry exactly)
is a bad row of the export, quarantined with its line number, and never reaches the
outbox or the ledger. The time range is ``ledger.timeutil``'s; the quantity and fen bounds
are the values the ledger's edges check (``ledger.limits``); the per-job counts are
plausibility bounds of this side.
"""

from __future__ import annotations

from ledger.errors import InvalidInput
from ledger.timeutil import EARLIEST, LATEST, format_time
from ledger.usage import UsageRecord

# The ledger's own bounds on a claim's quantity and cost (``ledger.limits`` at the edges):
# 31 million core-years of metered units, and 100 亿元 in fen.
MAX_QUANTITY = 10**15
MAX_FEN = 10**12
MAX_CPUS = 10**8  # cores of one job: more than any machine has
MAX_CARDS = 10**7  # accelerator cards of one job


def check_count(value: int, what: str, maximum: int) -> int:
    """``value`` if 0 <= value <= ``maximum``; else InvalidInput(OUT_OF_RANGE) naming it."""
    if not 0 <= value <= maximum:
        raise InvalidInput(
            f"{what} {_shown(value)} is out of range (0 to {maximum})",
            reason="OUT_OF_RANGE",
            details={"field": what},
        )
    return value


def check_usage(usage: UsageRecord) -> UsageRecord:
    """``usage`` if the ledger can take it: times in range, quantity a safe integer."""
    for what, moment in (("start", usage.start), ("end", usage.end)):
        if not EARLIEST <= moment < LATEST:
            raise InvalidInput(
                f"{what} {moment.isoformat()} is outside the years the ledger accepts"
                f" ({format_time(EARLIEST)} up to {format_time(LATEST)})",
                reason="OUT_OF_RANGE",
                details={"field": what},
            )
    check_count(usage.quantity, "quantity", MAX_QUANTITY)
    return usage


def _shown(value: int) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:10]}...({len(text)} digits)"
