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
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ledger.errors import InvalidInput

MAX_SAFE_INT = 2**53 - 1  # I-JSON (RFC 7493) / JCS: integers must be exact in a double

_STRING = json.encoder.encode_basestring  # ensure_ascii=False: as JCS escapes a string


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not a JSON value")


# _DUMP_SORTED's C encoder, made once rather than on every call (``_plain`` values only: no
# cycles, no floats); None where the json module has no C accelerator
_MAKE_C_ENCODER: Callable[..., Callable[[Any, int], Iterable[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None
)
_C_SORTED = (
    _MAKE_C_ENCODER(None, _refuse, _STRING, None, ":", ",", True, False, False)
    if _MAKE_C_ENCODER is not None
    else None
)
_DUMP = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_DUMP_SORTED = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, sort_keys=True
).encode
# UTF-8 lead bytes of U+E000..U+FFFF (0xEE, 0xEF) and of supplementary-plane characters
# (0xF0..0xF4), the only characters whose code-point order differs from UTF-16 order.
_SORTS_OTHERWISE = re.compile(rb"[\xee\xef\xf0-\xf4]")
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_SIXTEEN_DIGITS = b"0" * 16


def needs_full_check(data: bytes) -> bool:
    """Whether ``data`` holds a character whose code-point order differs from its UTF-16
    order, or a run of 16 or more digits (a number that may leave the I-JSON range): then
    only the full JCS encoder decides whether it is canonical. Done in C in two passes over
    the bytes; one regular expression with both alternatives took ten times as long (it
    tries the digit run at every position), and the audit asks this of every entry."""
    return _sorts_otherwise(data) or _SIXTEEN_DIGITS in data.translate(_DIGITS_TO_ZERO)


def _sorts_otherwise(data: bytes) -> bool:
    """Whether ``data`` holds a character whose code-point order differs from UTF-16's."""
    return not data.isascii() and _SORTS_OTHERWISE.search(data) is not None


def _sorted_text(value: Any) -> str:
    """``json.dumps(value, sort_keys=True)`` in the compact form, by the C encoder made
    once where the json module has one (JSON types only)."""
    return "".join(_C_SORTED(value, 0)) if _C_SORTED is not None else _DUMP_SORTED(value)


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


def _plain(value: Any) -> bool:
    """``value`` is made of dicts with str names, lists, tuples, str, bool, None and ints in
    the I-JSON range only, each of exactly that type (no float, no subclass): what
    ``json.dumps`` writes as JCS does, but for the member order ``_SORTS_OTHERWISE`` finds."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        in_range: bool = -MAX_SAFE_INT <= value <= MAX_SAFE_INT
        return in_range
    if kind is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if kind is list or kind is tuple:
        return all(_plain(v) for v in value)
    return False


def canonical_bytes(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``value`` (dicts, lists, str, int, bool, None).

    The common case is written in C, as ``parse_canonical`` checks it: a ``_plain`` value
    (JSON types only, integers in range) whose text holds no character that sorts
    otherwise in UTF-16 is JCS as ``json.dumps(sort_keys=True)`` writes it. Anything else,
    and every refusal (with the path it names), takes the full walk."""
    if _plain(value):
        try:
            data = _sorted_text(value).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: refused below, naming where
            pass
        else:
            if not _sorts_otherwise(data):
                return data
    return _DUMP(_normalise(value, "$")).encode("utf-8")


def canonical_flat(items: Sequence[Any]) -> bytes:
    """``canonical_bytes(list(items))``, written directly when every item is a str or an int
    in range (a disclosure's ``[salt, name, value]``, most often): JCS escapes a string as
    ``json`` does; anything else takes ``canonical_bytes``."""
    parts = []
    for item in items:
        kind = type(item)
        if kind is str:
            parts.append(_STRING(item))
        elif kind is int and -MAX_SAFE_INT <= item <= MAX_SAFE_INT:
            parts.append(str(item))
        else:
            return canonical_bytes(list(items))
    try:
        return ("[" + ",".join(parts) + "]").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: refused by the full walk, naming where
        return canonical_bytes(list(items))


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
        canonical = _sorted_text(value).encode("utf-8") == data
    else:
        canonical = canonical_bytes(value) == data
    if not canonical:
        raise InvalidInput("JSON is not in RFC 8785 canonical form")
    return value
