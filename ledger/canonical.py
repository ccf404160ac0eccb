"""RFC 8785 JSON Canonicalization Scheme (JCS) for the JSON the ledger writes.

The ledger's JSON never holds floats (money is integer fen, rates are integer basis
points), so JCS reduces to: UTF-8, no whitespace, object members sorted by the UTF-16
code units of their names, strings escaped as ECMAScript ``JSON.stringify`` does, and
integers in the I-JSON range. ``json.dumps`` with ``ensure_ascii=False`` escapes exactly
as JCS does (``\\b \\f \\n \\r \\t \\" \\\\``, other controls as lowercase ``\\u00xx``); its
``sort_keys`` orders by code point, which differs from UTF-16 order only between a
supplementary-plane character and one in U+E000..U+FFFF, so names are re-sorted by UTF-16
here. The test suite checks this against the ``rfc8785`` reference implementation.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ledger.errors import InvalidInput

MAX_SAFE_INT = 2**53 - 1  # I-JSON (RFC 7493) / JCS: integers must be exact in a double

_DUMP = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_DUMP_SORTED = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, sort_keys=True
).encode
# UTF-8 lead bytes of U+E000..U+FFFF (0xEE, 0xEF) and of supplementary-plane characters
# (0xF0..0xF4), the only characters whose code-point order differs from UTF-16 order.
_LATE_LEAD_BYTE = re.compile(rb"[\xee\xef\xf0-\xf4]")
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_SIXTEEN_DIGITS = b"0" * 16


def needs_full_check(data: bytes) -> bool:
    """Whether ``data`` holds a character whose code-point order differs from its UTF-16
    order, or a run of 16 or more digits (a number that may leave the I-JSON range): then
    only the full JCS encoder decides whether it is canonical. Done in C in two passes over
    the bytes; one regular expression with both alternatives took ten times as long (it
    tries the digit run at every position), and the audit asks this of every entry."""
    if not data.isascii() and _LATE_LEAD_BYTE.search(data) is not None:
        return True
    return _SIXTEEN_DIGITS in data.translate(_DIGITS_TO_ZERO)


def _utf16_key(name: str) -> bytes:
    return name.encode("utf-16-be", "surrogatepass")


def _normalise(value: Any, path: str) -> Any:
    if isinstance(value, dict):
        out = {}
        for key in sorted(value, key=lambda k: _utf16_key(k) if isinstance(k, str) else b""):
            if not isinstance(key, str):
                raise InvalidInput(f"{path}: object member names must be strings, got {key!r}")
            out[key] = _normalise(value[key], f"{path}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_normalise(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INT:
            raise InvalidInput(f"{path}: integer {value} is outside the I-JSON range ±(2^53-1)")
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInput(f"{path}: string is not valid Unicode (lone surrogate)") from exc
        return value
    if isinstance(value, float):
        raise InvalidInput(f"{path}: floats are not allowed in ledger JSON (use integers)")
    raise InvalidInput(f"{path}: {type(value).__name__} is not a JSON value")


def canonical_bytes(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``value`` (dicts, lists, str, int, bool, None)."""
    return _DUMP(_normalise(value, "$")).encode("utf-8")


def _reject_float(text: str) -> Any:
    raise ValueError(f"float {text} in ledger JSON")


def parse_canonical(data: bytes) -> Any:
    """Parse ``data`` and check that it is already in canonical form; raise InvalidInput if not.

    The auditor calls this for every entry, so the common case stays in C: floats are
    refused while parsing, and when the bytes hold no character whose sort order differs
    between code points and UTF-16 and no number long enough to leave the I-JSON range,
    ``json.dumps(sort_keys=True)`` *is* JCS and a byte comparison decides. Anything else
    takes the full check.
    """
    try:
        value = json.loads(data, parse_float=_reject_float, parse_constant=_reject_float)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"not valid ledger JSON: {exc}") from exc
    if not needs_full_check(data):
        canonical = _DUMP_SORTED(value).encode("utf-8") == data
    else:
        canonical = canonical_bytes(value) == data
    if not canonical:
        raise InvalidInput("JSON is not in RFC 8785 canonical form")
    return value
