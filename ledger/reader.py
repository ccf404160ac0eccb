"""Reading parsed JSON with paths: every accessor refuses a bad value naming where it is.

Entry bodies, policy files and request bodies are all read with :class:`Reader`, so that a
bad field is reported the same way everywhere (``claim: body.quantity: must be at least 1,
got 0``) with a machine reason (``MALFORMED_QUANTITY``) and the field in the details.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from ledger import uscc as uscc_mod
from ledger.canonical import MAX_SAFE_INT
from ledger.entry import Entry
from ledger.errors import InvalidInput
from ledger.limits import MAX_FEN
from ledger.money import BP_PER_UNIT, is_int
from ledger.timeutil import day_in_range, parse_ledger_time, parse_local, parse_time

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")


class Reader:
    """A parsed JSON value and its path; every accessor raises InvalidInput naming the path.

    ``reason`` is the default machine reason for errors raised through this reader;
    accessors take their own ``reason`` for fields with a specific one (for example
    ``MALFORMED_QUANTITY``).
    """

    def __init__(self, value: Any, path: str = "$", reason: str | None = None) -> None:
        self.value = value
        self.path = path
        self.reason = reason

    def fail(
        self, message: str, *, name: str | None = None, reason: str | None = None
    ) -> InvalidInput:
        where = self.path if name is None else f"{self.path}.{name}"
        return InvalidInput(
            f"{where}: {message}", reason=reason or self.reason, details={"field": where}
        )

    def obj(self, required: Iterable[str] = (), optional: Iterable[str] = ()) -> Reader:
        """Check that this is an object with every ``required`` member and no unknown one."""
        if not isinstance(self.value, dict):
            raise self.fail(f"must be an object, got {kind_of(self.value)}")
        required, optional = tuple(required), tuple(optional)
        for name in required:
            if name not in self.value:
                raise self.fail("is required", name=name)
        unknown = sorted(set(self.value) - set(required) - set(optional))
        if unknown:
            raise self.fail(
                f"unknown member {unknown[0]!r}; allowed: {sorted(required + optional)}"
            )
        return self

    def has(self, name: str) -> bool:
        return isinstance(self.value, dict) and self.value.get(name) is not None

    def child(self, name: str) -> Reader:
        if not isinstance(self.value, dict):
            raise self.fail(f"must be an object, got {kind_of(self.value)}")
        if name not in self.value:
            raise self.fail("is required", name=name)
        return Reader(self.value[name], f"{self.path}.{name}", self.reason)

    def opt_child(self, name: str) -> Reader | None:
        return self.child(name) if self.has(name) else None

    def items(self, name: str, *, nonempty: bool = False) -> list[Reader]:
        node = self.child(name)
        if not isinstance(node.value, list):
            raise node.fail(f"must be a list, got {kind_of(node.value)}")
        if nonempty and not node.value:
            raise node.fail("must not be empty")
        return [Reader(v, f"{node.path}[{i}]", self.reason) for i, v in enumerate(node.value)]

    def members(self, name: str) -> dict[str, Reader]:
        node = self.child(name)
        if not isinstance(node.value, dict):
            raise node.fail(f"must be an object, got {kind_of(node.value)}")
        return {k: Reader(v, f"{node.path}.{k}", self.reason) for k, v in node.value.items()}

    # scalars -------------------------------------------------------------------------

    def text(
        self,
        name: str,
        *,
        pattern: re.Pattern[str] | None = None,
        max_len: int = 2000,
        reason: str | None = None,
    ) -> str:
        value = self.child(name).value
        if not isinstance(value, str) or not value:
            raise self.fail(
                f"must be a non-empty string, got {kind_of(value)}", name=name, reason=reason
            )
        if len(value) > max_len:
            raise self.fail(f"is longer than {max_len} characters", name=name, reason=reason)
        if pattern is not None and not pattern.match(value):
            raise self.fail(f"{value!r} does not match {pattern.pattern}", name=name, reason=reason)
        return value

    def opt_text(self, name: str, **kw: Any) -> str | None:
        return self.text(name, **kw) if self.has(name) else None

    def ident(self, name: str, *, reason: str | None = None) -> str:
        """An identifier: 1-64 of ``A-Z a-z 0-9 _ . : -``, starting with a letter or digit."""
        return self.text(name, pattern=_ID, reason=reason)

    def integer(
        self,
        name: str,
        *,
        minimum: int | None = 0,
        maximum: int | None = MAX_SAFE_INT,
        reason: str | None = None,
    ) -> int:
        value = self.child(name).value
        if not is_int(value):
            raise self.fail(
                f"must be an integer, got {kind_of(value)} {value!r}", name=name, reason=reason
            )
        if minimum is not None and value < minimum:
            raise self.fail(f"must be at least {minimum}, got {value}", name=name, reason=reason)
        if maximum is not None and value > maximum:
            raise self.fail(
                f"must be at most {maximum}, got {value}",
                name=name,
                reason=reason or "OUT_OF_RANGE",
            )
        return int(value)

    def opt_integer(self, name: str, **kw: Any) -> int | None:
        return self.integer(name, **kw) if self.has(name) else None

    def fen(self, name: str, *, reason: str | None = None) -> int:
        """A money amount: integer fen, 0..10^12 (``ledger.limits.MAX_FEN``)."""
        return self.integer(name, minimum=0, maximum=MAX_FEN, reason=reason)

    def opt_fen(self, name: str) -> int | None:
        return self.fen(name) if self.has(name) else None

    def bp(self, name: str) -> int:
        """A rate: integer basis points, 0..10000."""
        return self.integer(name, minimum=0, maximum=BP_PER_UNIT)

    def boolean(self, name: str) -> bool:
        value = self.child(name).value
        if not isinstance(value, bool):
            raise self.fail(f"must be true or false, got {kind_of(value)}", name=name)
        return value

    def choice(self, name: str, values: Iterable[str], *, reason: str | None = None) -> str:
        allowed = tuple(values)
        value = self.child(name).value
        if value not in allowed:
            raise self.fail(
                f"must be one of {list(allowed)}, got {value!r}", name=name, reason=reason
            )
        return str(value)

    def sha256(self, name: str) -> str:
        """A SHA-256 digest as 64 lower-case hex digits."""
        return self.text(name, pattern=_SHA256)

    def time(self, name: str, *, reason: str | None = None) -> datetime:
        """A time in the ledger's one form (``ledger.timeutil.parse_ledger_time``), as an
        aware UTC datetime; refused MALFORMED_TIME (or OUT_OF_RANGE) naming the field."""
        value = self.text(name, max_len=64, reason=reason or "MALFORMED_TIME")
        try:
            return parse_ledger_time(value)
        except InvalidInput as exc:
            raise self.fail(exc.message, name=name, reason=exc.reason) from None

    def written_time(self, name: str, *, reason: str | None = None) -> datetime:
        """A time as people write it: RFC 3339 with any offset (``parse_time``), for inputs
        that are not signed bodies (scenario files, request parameters)."""
        value = self.text(name, max_len=64, reason=reason or "MALFORMED_TIME")
        try:
            return parse_time(value)
        except InvalidInput as exc:
            raise self.fail(exc.message, name=name, reason=exc.reason) from None

    def local(self, name: str, text: str, *, end: bool) -> datetime:
        """``text`` of member ``name``, an Asia/Shanghai date or date and time
        (``parse_local``); refused naming the field, OUT_OF_RANGE kept as such."""
        try:
            return parse_local(text, end=end)
        except InvalidInput as exc:
            kept = exc.reason if exc.reason == "OUT_OF_RANGE" else None
            raise self.fail(exc.message, name=name, reason=kept) from None

    def day(self, name: str) -> date:
        """A calendar date ``YYYY-MM-DD``."""
        value = self.text(name, max_len=10)
        try:
            if len(value) != 10:
                raise ValueError(value)
            day = date.fromisoformat(value)
        except ValueError:
            raise self.fail(f"{value!r} is not a date YYYY-MM-DD", name=name) from None
        try:
            return day_in_range(day)
        except InvalidInput as exc:
            raise self.fail(exc.message, name=name, reason=exc.reason) from None

    def uscc(self, name: str) -> str:
        value = self.child(name).value
        try:
            return uscc_mod.validate(value)
        except InvalidInput as exc:
            raise InvalidInput(
                f"{self.path}.{name}: {exc.message}", reason=exc.reason, details=exc.details
            ) from None


_KINDS = ((bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string"),
          (list, "a list"), (dict, "an object"))  # fmt: skip


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    return next((name for t, name in _KINDS if isinstance(value, t)), type(value).__name__)


def body_reader(entry: Entry, reason: str | None = None) -> Reader:
    """A reader over ``entry.body`` whose errors read ``claim: body.quantity: ...``."""
    return Reader(entry.body, f"{entry.kind}: body", reason)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
