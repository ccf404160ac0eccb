"""C2SP transparency-log checkpoints (c2sp.org/tlog-checkpoint) and Ed25519 witness
cosignatures (c2sp.org/tlog-cosignature, ``cosignature/v1``).

A checkpoint is a signed note whose text is::

    <origin>\\n<tree size>\\n<base64 root hash>\\n[<extension line>\\n ...]

Decisions:

* Parsing is strict: at least three non-empty lines, every line (extensions too) non-empty,
  the size an ASCII decimal uint64 without sign or leading zeros (``0`` for the empty
  tree), the root canonical base64 of exactly ``hash_size`` bytes (32, SHA-256, by
  default). ``parse_checkpoint(text, hash_size=None)`` accepts a root of any length; it
  exists for the transparency-dev/formats marshal vectors, which use short fake hashes.
  Nothing that verifies a log uses it.
* The log's key name SHOULD equal the origin (c2sp.org/tlog-checkpoint, "Signatures").
  ``sign_checkpoint`` enforces it, so suanli's own checkpoints follow the spec;
  ``open_checkpoint`` does not, because trust comes from the configured key and the
  origin check, and logs in the wild differ (sum.golang.org signs the origin
  "go.sum database tree").
* ``open_checkpoint`` requires a valid signature by the log key and, when ``origin`` is
  given, that origin. Witness keys are verified when they signed (a bad witness
  signature rejects the note, as for any known key) but are not required; callers that
  need a quorum use ``open_checkpoint_signatures`` and count.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.errors import InvalidInput, VerificationError
from ledger.keys import Signer, Verifier, b64decode_canonical
from ledger.note import (
    NoteSignature,
    NoteVerifier,
    is_valid_key_name,
    open_note,
    parse_note,
    sign_note,
)

HASH_SIZE = 32  # RFC 6962 with SHA-256
MAX_UINT64 = 2**64 - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]*")  # ASCII only: \d would also match other digits


def parse_uint64(text: str, what: str) -> int:
    """An ASCII decimal uint64 with no sign and no leading zeros, as C2SP writes numbers."""
    if not _DECIMAL.fullmatch(text):
        raise InvalidInput(f"{what} {text!r} is not a decimal number without leading zeros")
    value = int(text)
    if value > MAX_UINT64:
        raise InvalidInput(f"{what} {text} does not fit in 64 bits")
    return value


def _check_line(value: str, what: str) -> None:
    # A checkpoint line can hold neither a newline (it would split) nor any other ASCII
    # control (the note around it would be malformed, c2sp.org/signed-note).
    if not value:
        raise InvalidInput(f"checkpoint {what} must be non-empty")
    if any(c < " " for c in value):
        raise InvalidInput(f"checkpoint {what} {value!r} holds a newline or control character")


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head, the text of a c2sp.org/tlog-checkpoint note.

    ``origin``: the log's identity (first line); ``size``: number of leaves;
    ``root``: the RFC 6962 root hash at that size; ``extensions``: optional further lines,
    opaque and NOT RECOMMENDED, without their newlines.
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if isinstance(self.size, bool) or not 0 <= self.size <= MAX_UINT64:
            raise InvalidInput(f"checkpoint size {self.size!r} is not a uint64")
        for ext in self.extensions:
            _check_line(ext, "extension line")

    def body(self) -> str:
        """The note text: origin, size, base64 root, extension lines, each ending in \\n."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii")]
        return "".join(f"{line}\n" for line in (*lines, *self.extensions))


def parse_checkpoint(text: str, *, hash_size: int | None = HASH_SIZE) -> Checkpoint:
    """Parse a checkpoint body (the note text, without signatures). Raises ``InvalidInput``.

    ``hash_size=None`` accepts a root of any length (for format vectors only).
    """
    if not text.endswith("\n"):
        raise InvalidInput("checkpoint must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise InvalidInput(f"checkpoint has {len(lines)} lines, want at least 3")
    origin, size_text, root_text, *extensions = lines
    _check_line(origin, "origin")
    size = parse_uint64(size_text, "checkpoint size")
    root = b64decode_canonical(root_text, "checkpoint root hash")
    if hash_size is not None and len(root) != hash_size:
        raise InvalidInput(f"checkpoint root hash is {len(root)} bytes, want {hash_size}")
    return Checkpoint(origin=origin, size=size, root=root, extensions=tuple(extensions))


def sign_checkpoint(cp: Checkpoint, signer: Signer) -> str:
    """The checkpoint as a note signed by the log key, whose name must be the origin."""
    if len(cp.root) != HASH_SIZE:
        raise InvalidInput(f"checkpoint root hash is {len(cp.root)} bytes, want {HASH_SIZE}")
    if signer.name != cp.origin:
        # c2sp.org/tlog-checkpoint: "The log's key name in its signature line SHOULD match
        # the origin line." suanli's own logs always do.
        raise InvalidInput(
            f"log key name {signer.name!r} must equal the checkpoint origin {cp.origin!r}"
        )
    return sign_note(cp.body(), [signer])


def open_checkpoint_signatures(
    msg: str | bytes,
    log_verifier: Verifier,
    origin: str | None = None,
    witnesses: Sequence[NoteVerifier] = (),
) -> tuple[Checkpoint, list[NoteSignature]]:
    """``open_checkpoint`` that also returns the verified signatures (log's included),
    one per key, so that a caller can count witness cosignatures against a policy."""
    note, verified, _unverified = open_note(msg, [log_verifier, *witnesses])
    if not any(s.name == log_verifier.name and s.key_hash == log_verifier.hash for s in verified):
        raise VerificationError(
            f"checkpoint is not signed by the log key {log_verifier.key_id}",
            reason="NO_LOG_SIGNATURE",
            details={"key": log_verifier.key_id},
        )
    # Only now is the text trusted enough to parse (c2sp.org/signed-note: the text MUST be
    # ignored unless signed by a trusted key).
    cp = parse_checkpoint(note.text)
    if origin is not None and cp.origin != origin:
        raise VerificationError(
            f"checkpoint origin {cp.origin!r} is not the expected {origin!r}",
            reason="WRONG_ORIGIN",
        )
    return cp, verified


def open_checkpoint(
    msg: str | bytes,
    log_verifier: Verifier,
    origin: str | None = None,
    witnesses: Sequence[NoteVerifier] = (),
) -> Checkpoint:
    """Verify a signed checkpoint and return it.

    Raises ``VerificationError`` unless ``log_verifier`` signed it validly, any known
    (log or witness) signature present verifies, and the origin is ``origin`` when given;
    ``InvalidInput`` when the note or the checkpoint text is malformed.
    """
    return open_checkpoint_signatures(msg, log_verifier, origin, witnesses)[0]


# --- c2sp.org/tlog-cosignature, Ed25519 (cosignature/v1) ---------------------------------

ALG_COSIGNATURE_V1 = 0x04  # c2sp.org/signed-note signature type for cosignature/v1
MAX_TIMESTAMP = 2**63 - 1  # c2sp.org/tlog-cosignature: timestamp MUST NOT exceed 2^63 - 1
_COSIG_LEN = 8 + 64  # timestamped_signature: u64 timestamp || Ed25519 signature


def cosignature_message(body: str, timestamp: int) -> bytes:
    """The message an Ed25519 cosigner signs: ``cosignature/v1``, ``time <t>``, then the
    whole checkpoint note text (c2sp.org/tlog-cosignature, "Ed25519 signed message")."""
    if isinstance(timestamp, bool) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise InvalidInput(f"cosignature timestamp {timestamp!r} is out of range")
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def cosigner_key_hash(name: str, public: bytes) -> int:
    """SHA-256(name || "\\n" || 0x04 || public key)[:4], big-endian."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ALG_COSIGNATURE_V1]) + public)
    return int(struct.unpack(">I", digest.digest()[:4])[0])


@dataclass(frozen=True)
class CosignatureVerifier:
    """A witness's Ed25519 cosignature/v1 key; usable wherever a ``NoteVerifier`` is.

    The same Ed25519 key as a plain note key has a different key hash (type 0x04), so the
    two never collide in a verifier list.
    """

    name: str
    public: bytes
    hash: int = field(init=False)
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name):
            raise InvalidInput(f"bad cosigner key name {self.name!r}")
        if len(self.public) != 32:
            raise InvalidInput(f"Ed25519 public key must be 32 bytes, got {len(self.public)}")
        object.__setattr__(self, "hash", cosigner_key_hash(self.name, self.public))
        object.__setattr__(self, "_key", Ed25519PublicKey.from_public_bytes(self.public))

    @classmethod
    def from_signer(cls, signer: Signer) -> CosignatureVerifier:
        return cls(signer.name, signer.verifier.public)

    @property
    def key_id(self) -> str:
        return f"{self.name}+{self.hash:08x}"

    @property
    def vkey(self) -> str:
        b64 = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + self.public).decode("ascii")
        return f"{self.key_id}+{b64}"

    @classmethod
    def parse(cls, vkey: str) -> CosignatureVerifier:
        """Parse ``name+hex8+base64(0x04 || public key)``."""
        name, _, rest = vkey.partition("+")
        hash_hex, _, b64 = rest.partition("+")
        if not re.fullmatch(r"[0-9a-f]{8}", hash_hex):
            raise InvalidInput(f"malformed cosigner key {vkey!r}: want name+hex8+base64")
        raw = b64decode_canonical(b64, "cosigner key")
        if len(raw) != 33 or raw[0] != ALG_COSIGNATURE_V1:
            raise InvalidInput(f"cosigner key {vkey!r} is not 0x04 + a 32-byte Ed25519 key")
        verifier = cls(name, raw[1:])
        if verifier.hash != int(hash_hex, 16):
            raise InvalidInput(f"cosigner key {vkey!r}: key hash does not match the key")
        return verifier

    def verify(self, message: bytes, signature: bytes) -> None:
        """Verify a cosignature of the note text ``message``: ``signature`` is the
        8-byte big-endian timestamp followed by the Ed25519 signature."""
        if len(signature) != _COSIG_LEN:
            raise VerificationError(f"cosignature by {self.key_id} is not {_COSIG_LEN} bytes")
        try:
            timestamp = cosignature_timestamp(signature)
        except InvalidInput as exc:
            # A timestamp above 2^63 - 1 is forbidden by the spec, so the signature line is
            # invalid: a verification failure of a known key (the whole note is rejected),
            # not malformed input that would escape open_note's handling.
            raise VerificationError(f"cosignature by {self.key_id}: {exc.message}") from exc
        signed = cosignature_message(message.decode("utf-8"), timestamp)
        try:
            self._key.verify(signature[8:], signed)
        except InvalidSignature as exc:
            raise VerificationError(f"invalid cosignature by {self.key_id}") from exc


def cosignature_timestamp(signature: bytes) -> int:
    """The POSIX time a cosigner states it saw the checkpoint (first 8 bytes, big-endian)."""
    if len(signature) < 8:
        raise InvalidInput("cosignature is too short to hold a timestamp")
    (timestamp,) = struct.unpack(">Q", signature[:8])
    if timestamp > MAX_TIMESTAMP:
        raise InvalidInput(f"cosignature timestamp {timestamp} exceeds 2^63 - 1")
    return int(timestamp)


def cosign(body: str, signer: Signer, timestamp: int) -> NoteSignature:
    """The cosignature/v1 signature of ``signer`` on the checkpoint note text ``body``:
    key hash SHA-256(name || "\\n" || 0x04 || public key)[:4], signature the 8-byte
    big-endian ``timestamp`` followed by Ed25519 over ``cosignature_message``.

    ``NoteSignature.line()`` of the result is what a witness answers to add-checkpoint.
    The caller is the witness: it must already have checked the log's signature and the
    consistency with what it saw before; this function only checks the body's shape.
    """
    parse_checkpoint(body)
    cosigner = CosignatureVerifier.from_signer(signer)
    sig = signer.sign(cosignature_message(body, timestamp))
    return NoteSignature(
        name=signer.name,
        key_hash=cosigner.hash,
        signature=struct.pack(">Q", timestamp) + sig,
    )


def cosign_checkpoint(signed_checkpoint: str, signer: Signer, timestamp: int) -> str:
    """Append a cosignature/v1 line by ``signer`` to a signed checkpoint note."""
    note = parse_note(signed_checkpoint)
    return signed_checkpoint + cosign(note.text, signer, timestamp).line()
