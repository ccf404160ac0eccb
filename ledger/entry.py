"""Log entries: one signed, canonical JSON document per change.

An entry is ``{"v": 1, "kind": ..., "at": ..., "body": {...}, "sigs": [...]}`` in RFC 8785
canonical form, with ``"logged": ...`` beside them when the ledger recorded it at another
time than its author signed it; those bytes are the Merkle leaf. Each signature is Ed25519
over

    b"suanli-entry/v1\\n" || JCS({"v", "kind", "at", "body"})

(the entry without ``sigs`` and ``logged``), by a key named ``name+hex8`` as in C2SP
signed-note. The prefix keeps an entry signature from ever being mistaken for a signature
of anything else (a note, a voucher, a claim in another format).

``at`` is the author's signed time; ``logged`` is the ledger's clock when it appended the
entry (vouched for by the log key's checkpoint, which commits to the leaf). The entry's time
in the ledger is ``logged`` if present, else ``at``: an author's clock, a centre's say,
never sets the ledger's time.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ledger.canonical import canonical_bytes, parse_canonical
from ledger.disclosure import erased_by, reveal
from ledger.errors import InvalidInput
from ledger.keys import Signer, b64decode_canonical

ENTRY_VERSION = 1
SIGNING_PREFIX = b"suanli-entry/v1\n"
MAX_ENTRY_BYTES = 65535  # a C2SP entry bundle stores each entry's length as uint16
_LAST_MEMBER = b',"v":%d}' % ENTRY_VERSION
_FIELDS = frozenset(
    {"kind", "at", "body", "sigs", "logged", "_signed_part", "disclosures", "_clear"}
)


@dataclass(frozen=True)
class Signature:
    key: str  # key id, "name+hex8"
    sig: bytes

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "sig": base64.b64encode(self.sig).decode()}


@dataclass(frozen=True)
class Entry:
    """One change. ``body`` holds only JSON values (no floats); ``at`` is RFC 3339 UTC."""

    kind: str
    at: str
    body: Mapping[str, Any]
    sigs: tuple[Signature, ...] = ()
    logged: str | None = None  # the ledger's time, when it differs from ``at``
    # JCS of the signed part, computed once and handed on to the signed and stamped copies
    _signed_part: bytes | None = field(default=None, compare=False, repr=False)
    # the disclosures that open the body's concealed members (ledger.disclosure): kept
    # beside the log, never in the leaf
    disclosures: tuple[str, ...] = field(default=(), compare=False, repr=False)
    # the body with its concealed members put back: given by the author who concealed it
    # (it made the disclosures from it), or computed from the disclosures once
    _clear: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def time(self) -> str:
        """The entry's time in the ledger: when it was logged (or signed, if the same)."""
        return self.logged if self.logged is not None else self.at

    def _copy(self, **changes: Any) -> Entry:
        """A copy with ``changes``, keeping the signed part's JCS and the disclosures.

        Made as ``ledger.state`` copies a part, by its ``__dict__`` (an entry has no checks
        in ``__init__``), not through the dataclass's ``__init__``: each claim is copied
        two or three times on its way in."""
        unknown = changes.keys() - _FIELDS
        if unknown:
            raise TypeError(f"Entry has no field {sorted(unknown)[0]!r}")
        twin: Entry = object.__new__(Entry)
        twin.__dict__.update(self.__dict__)
        twin.__dict__.update(changes)
        return twin

    def stamped(self, logged: str) -> Entry:
        """This entry as the ledger records it at ``logged`` (signatures unchanged)."""
        return self._copy(logged=None if logged == self.at else logged)

    def disclosed(
        self, disclosures: tuple[str, ...], clear: Mapping[str, Any] | None = None
    ) -> Entry:
        """This entry with the disclosures of its concealed members beside it; ``clear`` is
        the body they open, for the author who made them from it (it is then not parsed
        back from the disclosures)."""
        return self._copy(disclosures=disclosures, _clear=clear)

    def clear_body(self) -> Mapping[str, Any]:
        """The body with its concealed members put back from the disclosures, each checked
        against its digest (``ledger.disclosure.reveal``); computed once per entry."""
        if self._clear is None:
            object.__setattr__(self, "_clear", reveal(self.body, self.disclosures))
        assert self._clear is not None
        return self._clear

    @property
    def erased_by(self) -> int | None:
        """The index of the entry that erased this one's disclosures, if one did."""
        return erased_by(self.disclosures)

    def unsigned(self) -> dict[str, Any]:
        return {"v": ENTRY_VERSION, "kind": self.kind, "at": self.at, "body": self.body}

    def _canonical(self) -> bytes:
        """JCS of ``{v, kind, at, body}``: computed once per entry (and its copies)."""
        if self._signed_part is None:
            object.__setattr__(self, "_signed_part", canonical_bytes(self.unsigned()))
        assert self._signed_part is not None
        return self._signed_part

    def message(self) -> bytes:
        """The bytes every signature of this entry covers."""
        return SIGNING_PREFIX + self._canonical()

    def signed(self, *signers: Signer) -> Entry:
        message = self.message()
        new = tuple(Signature(s.key_id, s.sign(message)) for s in signers)
        return self._copy(sigs=self.sigs + new, _signed_part=self._canonical())

    def to_json(self) -> dict[str, Any]:
        out = {**self.unsigned(), "sigs": [s.to_json() for s in self.sigs]}
        if self.logged is not None:
            out["logged"] = self.logged
        return out

    def to_bytes(self) -> bytes:
        """The canonical bytes of the whole entry, the Merkle leaf.

        JCS orders the members ``at, body, kind, logged, sigs, v``: the signed part's bytes
        end with ``,"v":1}``, and ``logged`` and ``sigs`` go just before it."""
        signed = self._canonical()
        parts = [signed[: -len(_LAST_MEMBER)]]
        if self.logged is not None:
            parts.append(b',"logged":' + canonical_bytes(self.logged))
        parts.append(b',"sigs":' + canonical_bytes([s.to_json() for s in self.sigs]))
        parts.append(_LAST_MEMBER)
        data = b"".join(parts)
        if len(data) > MAX_ENTRY_BYTES:
            raise InvalidInput(f"entry is {len(data)} bytes; at most {MAX_ENTRY_BYTES} allowed")
        return data

    @classmethod
    def from_json(cls, obj: Any) -> Entry:
        if not isinstance(obj, dict) or set(obj) - {"logged"} != {
            "v",
            "kind",
            "at",
            "body",
            "sigs",
        }:
            raise InvalidInput(
                "entry must be an object with exactly v, kind, at, body, sigs (and logged)"
            )
        if obj["v"] != ENTRY_VERSION:
            raise InvalidInput(f"entry version {obj['v']!r} is not {ENTRY_VERSION}")
        kind, at, body, sigs = obj["kind"], obj["at"], obj["body"], obj["sigs"]
        if not isinstance(kind, str) or not kind:
            raise InvalidInput("entry kind must be a non-empty string")
        if not isinstance(at, str):
            raise InvalidInput("entry time must be a string")
        logged = obj.get("logged")
        if "logged" in obj and (not isinstance(logged, str) or logged == at):
            raise InvalidInput("entry logged time must be a string other than at")
        # ``at`` is parsed (and refused if malformed) by the fold, which needs its value.
        if not isinstance(body, dict):
            raise InvalidInput("entry body must be an object")
        if not isinstance(sigs, list):
            raise InvalidInput("entry sigs must be a list")
        parsed = []
        for item in sigs:
            if (
                not isinstance(item, dict)
                or len(item) != 2
                or "key" not in item
                or "sig" not in item
            ):
                raise InvalidInput("each signature must be {key, sig}")
            raw = b64decode_canonical(item["sig"], "entry signature")
            if len(raw) != 64:
                raise InvalidInput("an Ed25519 signature is 64 bytes")
            parsed.append(Signature(str(item["key"]), raw))
        return cls(kind, at, body, tuple(parsed), logged)

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry:
        """Parse a stored leaf; refuses anything not in canonical form."""
        return cls.from_json(parse_canonical(data))
