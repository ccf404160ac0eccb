"""Money and rates: integer fen and integer basis points, and the one rounding rule.

* Money is an integer number of 分 (fen): 1 元 = 100 fen, 1 万元 = 1,000,000 fen. The
  largest figure in the 2023 round (1000 万元 = 1,000,000,000 fen) is far inside the
  I-JSON range (±2^53-1) that the canonical form allows.
* A rate is an integer number of basis points: 10000 bp = 100 %, 3000 bp = 30 %.
* **Rounding, written down once**: a rate applied to an amount is rounded *down* to the
  fen, ``floor(amount_fen × rate_bp / 10000)``. Every subsidy, every share of a cost and
  every 50 %-of-average figure in the ledger goes through :func:`apply_rate`, so the city
  never pays a part of a fen more than the notice allows.

Nothing here uses ``float``.
"""

from __future__ import annotations

from ledger.canonical import MAX_SAFE_INT
from ledger.errors import InvalidInput

FEN_PER_YUAN = 100
FEN_PER_WAN = 10_000 * FEN_PER_YUAN  # 1 万元
BP_PER_UNIT = 10_000  # 100 % in basis points


def yuan(amount: int) -> int:
    """``amount`` 元 in fen."""
    return amount * FEN_PER_YUAN


def wan(amount: int) -> int:
    """``amount`` 万元 in fen."""
    return amount * FEN_PER_WAN


def apply_rate(amount_fen: int, rate_bp: int) -> int:
    """``floor(amount_fen × rate_bp / 10000)``: the ledger's only rounding of money."""
    check_fen(amount_fen, "amount")
    check_bp(rate_bp, "rate")
    return (amount_fen * rate_bp) // BP_PER_UNIT


def is_int(value: object) -> bool:
    """True for a JSON integer (``bool`` is not one, though Python says it is an ``int``)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_fen(value: object, where: str, *, reason: str | None = None) -> int:
    """``value`` as a fen amount: an integer in 0..2^53-1, else InvalidInput naming ``where``."""
    if not is_int(value):
        raise InvalidInput(
            f"{where} must be an integer number of fen, got {value!r}", reason=reason
        )
    assert isinstance(value, int)
    if value < 0 or value > MAX_SAFE_INT:
        raise InvalidInput(f"{where} must be between 0 and 2^53-1 fen, got {value}", reason=reason)
    return value


def check_bp(value: object, where: str, *, maximum: int = BP_PER_UNIT) -> int:
    """``value`` as a rate in basis points: an integer in 0..``maximum``."""
    if not is_int(value):
        raise InvalidInput(f"{where} must be an integer number of basis points, got {value!r}")
    assert isinstance(value, int)
    if value < 0 or value > maximum:
        raise InvalidInput(f"{where} must be between 0 and {maximum} bp, got {value}")
    return value


def format_fen(amount_fen: int) -> str:
    """``300000000`` -> ``"3,000,000.00 元"`` (for messages and reports only)."""
    sign = "-" if amount_fen < 0 else ""
    whole, part = divmod(abs(amount_fen), FEN_PER_YUAN)
    return f"{sign}{whole:,}.{part:02d} 元"


def format_bp(rate_bp: int) -> str:
    """``3000`` -> ``"30%"``, ``1250`` -> ``"12.5%"``."""
    whole, part = divmod(rate_bp, 100)
    return f"{whole}%" if part == 0 else f"{whole}.{part:02d}".rstrip("0") + "%"
