"""C2SP signed notes (c2sp.org/signed-note), with the semantics of Go's ``sumdb/note``.

A signed note is a text ending in a newline, a blank line, and one or more signature
lines ``— <key name> base64(uint32 key hash || signature)``. Checkpoints
(``ledger.checkpoint``) and witness cosignatures are signed notes, so this module is the
one place that parses and verifies them.

Decisions, all matching ``golang.org/x/mod/sumdb/note`` unless said otherwise:

* At most :data:`MAX_SIGNATURES` (100) signature lines; more is a malformed note. The
  spec says verifiers SHOULD cap the count but MUST accept at least 16.
* A signature line must decode to at least 5 bytes (4 bytes of key hash + a signature).
* Base64 (signatures here, and the root hash in ``ledger.checkpoint``) must be
  *canonical* standard base64: padded, and with zero spare bits. Go's decoder accepts
  non-zero spare bits; refusing them means one signed note has exactly one byte string,
  so nobody can re-encode it into a different-looking note with the same signatures.
* Key names follow the signed-note rule (non-empty, no Unicode spaces, no ``+``);
  Python's ``str.isspace`` stands in for Go's ``unicode.IsSpace`` (it also counts
  U+001C..U+001F, which a note cannot contain anyway, being control characters).
* Verification looks keys up by the (name, key hash) pair. Unknown pairs are ignored and
  reported as unverified; a known key whose signature fails rejects the whole note; a
  note with no verified signature is rejected; two verifiers with the same pair are an
  "ambiguous key" when a signature refers to that pair; a key that signed twice counts
  once.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ledger.errors import InvalidInput, NotFound, VerificationError
from ledger.keys import Signer, b64decode_canonical

MAX_SIGNATURES = 100  # Go's limit; c2sp.org/signed-note: MUST accept at least 16
SIG_PREFIX = "— "  # U+2014 EM DASH, U+0020 SPACE (c2sp.org/signed-note, "Format")
_MIN_SIG_BYTES = 5  # 4-byte key hash + at least one signature byte, as Go requires


class NoteVerifier(Protocol):
    """What ``open_note`` needs from a key: ``ledger.keys.Verifier`` is one.

    ``ledger.checkpoint.CosignatureVerifier`` is another: it verifies
    c2sp.org/tlog-cosignature signatures, which sign a message derived from the note text.
    """

    @property
    def name(self) -> str: ...

    @property
    def hash(self) -> int: ...

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise ``VerificationError`` unless ``signature`` signs ``message``."""


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a note.

    ``name``: the key name; ``key_hash``: the uint32 key ID (big-endian in the line);
    ``signature``: the raw signature bytes that follow the 4-byte key hash.
    """

    name: str
    key_hash: int
    signature: bytes

    @property
    def key_id(self) -> str:
        """``name+hex8``, how the ledger and Go's error messages name a key."""
        return f"{self.name}+{self.key_hash:08x}"

    def line(self) -> str:
        """The signature line, newline included."""
        raw = struct.pack(">I", self.key_hash) + self.signature
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(raw).decode('ascii')}\n"


@dataclass(frozen=True)
class Note:
    """A parsed note: ``text`` (ends with a newline, excludes the blank separator line)
    and every signature line in the order it appears, duplicates included."""

    text: str
    signatures: tuple[NoteSignature, ...]


def _malformed(why: str) -> InvalidInput:
    return InvalidInput(f"malformed note: {why}", reason="MALFORMED_NOTE")


def is_valid_key_name(name: str) -> bool:
    """c2sp.org/signed-note: key names MUST be non-empty and contain no Unicode spaces or '+'."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def _check_text(text: str, what: str) -> None:
    """Signed notes MUST be valid UTF-8 without ASCII controls other than newline."""
    try:
        text.encode("utf-8")  # a str from surrogateescape decoding holds lone surrogates
    except UnicodeEncodeError as exc:
        raise _malformed(f"{what} is not valid UTF-8") from exc
    for i, c in enumerate(text):
        if c < " " and c != "\n":
            raise _malformed(f"{what} holds control character U+{ord(c):04X} at offset {i}")


def _decode(msg: str | bytes) -> str:
    if isinstance(msg, bytes):
        try:
            msg = msg.decode("utf-8")  # strict: refuses overlong forms and surrogates, as Go
        except UnicodeDecodeError as exc:
            raise _malformed("not valid UTF-8") from exc
    _check_text(msg, "note")
    return msg


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(SIG_PREFIX):
        raise _malformed(f"line {line!r} is not a signature line ('— name base64')")
    name, _, b64 = line[len(SIG_PREFIX) :].partition(" ")
    if not is_valid_key_name(name):
        raise _malformed(f"bad key name {name!r} in signature line")
    try:
        raw = b64decode_canonical(b64, "signature")
    except InvalidInput as exc:
        raise _malformed(exc.message) from exc
    if len(raw) < _MIN_SIG_BYTES:
        raise _malformed(f"signature of {name!r} is {len(raw)} bytes, want a key hash and more")
    (key_hash,) = struct.unpack(">I", raw[:4])
    return NoteSignature(name=name, key_hash=int(key_hash), signature=raw[4:])


def parse_note(msg: str | bytes) -> Note:
    """Split a signed note into text and signature lines, checking structure only.

    Nothing is verified here: the text MUST be ignored until ``open_note`` has verified a
    trusted signature (c2sp.org/signed-note). Malformed input raises
    ``InvalidInput("malformed note: ...")``.
    """
    text = _decode(msg)
    # The text ends at the *last* blank line: the text may contain blank lines itself
    # (c2sp.org/signed-note, "Format"), the signature block cannot.
    split = text.rfind("\n\n")
    if split < 0:
        raise _malformed("no blank line before the signatures")
    body, block = text[: split + 1], text[split + 2 :]
    if not block:
        raise _malformed("no signature lines")
    if not block.endswith("\n"):
        raise _malformed("the last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise _malformed(f"{len(lines)} signatures, more than the limit of {MAX_SIGNATURES}")
    return Note(text=body, signatures=tuple(_parse_signature_line(line) for line in lines))


def format_note(note: Note) -> str:
    """The wire form of ``note``: text, blank line, one line per signature, in order."""
    _check_text(note.text, "note text")
    if not note.text.endswith("\n"):
        raise _malformed("text must end with a newline")
    if not note.signatures:
        raise _malformed("a signed note needs at least one signature")
    for sig in note.signatures:
        if not is_valid_key_name(sig.name) or not 0 <= sig.key_hash < 2**32 or not sig.signature:
            raise _malformed(f"bad signature entry for {sig.name!r}")
    return note.text + "\n" + "".join(sig.line() for sig in note.signatures)


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """Sign ``text`` with every signer: ``text + "\\n" + one signature line per signer``.

    Ed25519 (RFC 8032) is deterministic, so the output depends only on text and keys.
    """
    if not text.endswith("\n"):
        raise _malformed("text must end with a newline")
    _check_text(text, "note text")
    if not signers:
        raise InvalidInput("sign_note needs at least one signer")
    message = text.encode("utf-8")
    sigs = [
        NoteSignature(name=s.name, key_hash=s.verifier.hash, signature=s.sign(message))
        for s in signers
    ]
    return format_note(Note(text=text, signatures=tuple(sigs)))


class VerifierList:
    """Known keys, looked up by (name, key hash) like Go's ``note.VerifierList``.

    Duplicates are kept and only reported when looked up: a signature that names a pair
    held by two verifiers cannot be attributed, so it is an error rather than a guess.
    """

    def __init__(self, verifiers: Iterable[NoteVerifier]) -> None:
        self._by_id: dict[tuple[str, int], list[NoteVerifier]] = {}
        for v in verifiers:
            self._by_id.setdefault((v.name, v.hash), []).append(v)

    def get(self, name: str, key_hash: int) -> NoteVerifier | None:
        """The verifier for (name, key hash); ``None`` if unknown; raises if ambiguous."""
        found = self._by_id.get((name, key_hash))
        if not found:
            return None
        if len(found) > 1:
            key_id = f"{name}+{key_hash:08x}"
            raise VerificationError(
                f"ambiguous key {key_id}", reason="AMBIGUOUS_KEY", details={"key": key_id}
            )
        return found[0]

    def verifier(self, name: str, key_hash: int) -> NoteVerifier:
        """Like ``get``, but an unknown key raises ``NotFound("unknown key NAME+HASH")``."""
        found = self.get(name, key_hash)
        if found is None:
            key_id = f"{name}+{key_hash:08x}"
            raise NotFound(f"unknown key {key_id}", reason="UNKNOWN_KEY", details={"key": key_id})
        return found


def open_note(
    msg: str | bytes, verifiers: Sequence[NoteVerifier]
) -> tuple[Note, list[NoteSignature], list[NoteSignature]]:
    """Parse ``msg`` and verify its signatures against the known ``verifiers``.

    Returns ``(note, verified, unverified)``: ``verified`` holds one signature per known
    key that signed (repeats dropped), ``unverified`` the distinct signatures of unknown
    keys, which c2sp.org/signed-note says verifiers MUST ignore. Raises
    ``VerificationError`` if a known key's signature fails ("invalid signature for key
    NAME+HASH": the spec says clients SHOULD then reject the whole note) or if no known
    key signed ("note has no verifiable signatures": MUST reject).
    """
    note = parse_note(msg)
    known = VerifierList(verifiers)
    message = note.text.encode("utf-8")
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    seen: set[tuple[str, int]] = set()
    for sig in note.signatures:
        verifier = known.get(sig.name, sig.key_hash)
        if verifier is None:
            if sig not in unverified:
                unverified.append(sig)
            continue
        if (sig.name, sig.key_hash) in seen:
            continue  # Go drops repeated signatures by one key without checking them
        seen.add((sig.name, sig.key_hash))
        try:
            verifier.verify(message, sig.signature)
        except VerificationError as exc:
            raise VerificationError(
                f"invalid signature for key {sig.key_id}",
                reason="INVALID_SIGNATURE",
                details={"key": sig.key_id},
            ) from exc
        verified.append(sig)
    if not verified:
        raise VerificationError("note has no verifiable signatures", reason="UNVERIFIED_NOTE")
    return note, verified, unverified
