"""Ed25519 keys named as in C2SP signed-note.

A verifier key string is ``<name>+<hex8 key hash>+<base64(0x01 || public key)>``, and a
signer (private) key string is ``PRIVATE+KEY+<name>+<hex8>+<base64(0x01 || seed)>``.
The key hash is the first four bytes of SHA-256(name || "\\n" || 0x01 || public key).
The ledger names a key by ``<name>+<hex8>`` (its *key id*) wherever it records who signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import InvalidInput, VerificationError

ALG_ED25519 = 0x01


def check_key_name(name: str) -> None:
    if not name or "+" in name or any(c.isspace() for c in name) or not name.isprintable():
        raise InvalidInput(f"key name {name!r} must be non-empty, printable, without spaces or '+'")


def key_hash(name: str, public: bytes) -> int:
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public).digest()
    return int(struct.unpack(">I", digest[:4])[0])


def b64decode_canonical(text: str, what: str = "value") -> bytes:
    """Decode standard padded base64 (RFC 4648 section 4) and refuse any other spelling.

    Raises ``InvalidInput`` naming ``what``. Canonical means re-encoding gives ``text``
    back, which rules out missing or extra padding and non-zero spare bits: Python accepts
    a stray '=' after a full quantum (Go's decoder refuses it), and keys, signatures and
    hashes are compared as text, so only one spelling of each may exist.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidInput(f"{what} is not standard base64: {text!r}") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise InvalidInput(f"{what} is not canonical base64: {text!r}")
    return raw


@dataclass(frozen=True)
class Verifier:
    """A named Ed25519 public key."""

    name: str
    public: bytes
    hash: int = field(init=False)
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.public) != 32:
            raise InvalidInput(f"Ed25519 public key must be 32 bytes, got {len(self.public)}")
        object.__setattr__(self, "hash", key_hash(self.name, self.public))
        object.__setattr__(self, "_key", Ed25519PublicKey.from_public_bytes(self.public))

    def __reduce__(self) -> tuple[type[Verifier], tuple[str, bytes]]:
        # Pickled (fold snapshots) as its name and public bytes; the key object is rebuilt.
        return (Verifier, (self.name, self.public))

    @property
    def key_id(self) -> str:
        return f"{self.name}+{self.hash:08x}"

    @property
    def vkey(self) -> str:
        b64 = base64.b64encode(bytes([ALG_ED25519]) + self.public).decode()
        return f"{self.key_id}+{b64}"

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """Parse a verifier key string; every malformed or inconsistent string is refused."""
        name, sep, rest = vkey.partition("+")
        hash_hex, sep2, b64 = rest.partition("+")
        if not sep or not sep2 or len(hash_hex) != 8 or hash_hex != hash_hex.lower():
            raise InvalidInput(f"malformed verifier key {vkey!r}: want name+hex8+base64")
        try:
            want_hash = int(hash_hex, 16)
        except ValueError as exc:
            raise InvalidInput(f"malformed verifier key {vkey!r}: key hash is not hex") from exc
        raw = b64decode_canonical(b64, f"verifier key {vkey!r}")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise InvalidInput(f"verifier key {vkey!r} is not an Ed25519 key (0x01 + 32 bytes)")
        verifier = cls(name, raw[1:])
        if verifier.hash != want_hash:
            raise InvalidInput(f"verifier key {vkey!r}: key hash does not match the key")
        return verifier

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise VerificationError unless ``signature`` is this key's signature of ``message``."""
        try:
            self._key.verify(signature, message)
        except InvalidSignature as exc:
            raise VerificationError(f"invalid signature for key {self.key_id}") from exc

    def is_valid(self, message: bytes, signature: bytes) -> bool:
        try:
            self.verify(message, signature)
        except VerificationError:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """A named Ed25519 private key. Its repr never shows the seed."""

    name: str
    seed: bytes = field(repr=False)
    _private: Ed25519PrivateKey = field(init=False, repr=False, compare=False)
    verifier: Verifier = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from cryptography.hazmat.primitives import serialization

        check_key_name(self.name)
        if len(self.seed) != 32:
            raise InvalidInput("Ed25519 seed must be 32 bytes")
        private = Ed25519PrivateKey.from_private_bytes(self.seed)
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        object.__setattr__(self, "_private", private)
        object.__setattr__(self, "verifier", Verifier(self.name, public))

    @classmethod
    def generate(cls, name: str) -> Signer:
        from cryptography.hazmat.primitives import serialization

        key = Ed25519PrivateKey.generate()
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return cls(name, seed)

    @classmethod
    def parse(cls, skey: str) -> Signer:
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise InvalidInput("malformed signer key: want PRIVATE+KEY+name+hex8+base64")
        raw = b64decode_canonical(parts[4], "signer key")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise InvalidInput("signer key is not an Ed25519 key")
        signer = cls(parts[2], raw[1:])
        if f"{signer.verifier.hash:08x}" != parts[3]:
            raise InvalidInput("signer key: key hash does not match the key")
        return signer

    @property
    def key_id(self) -> str:
        return self.verifier.key_id

    @property
    def skey(self) -> str:
        b64 = base64.b64encode(bytes([ALG_ED25519]) + self.seed).decode()
        return f"PRIVATE+KEY+{self.key_id}+{b64}"

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)


@dataclass(frozen=True)
class ServiceKeys:
    """The private keys the service holds: the log key signs checkpoints and the key
    registry, the issuer key signs the bureau's decisions and vouchers, the service key
    signs what the service records on behalf of signed-in users."""

    log: Signer
    issuer: Signer
    service: Signer
    log_ring: dict[str, Signer] = field(default_factory=dict)
    """Every log key this service holds, current and past and staged, by key id."""

    def log_key(self, key_id: str) -> Signer | None:
        return self.log if key_id == self.log.key_id else self.log_ring.get(key_id)

    def with_log_key(self, new: Signer) -> ServiceKeys:
        """The same keys with ``new`` staged in the ring (before a rotation hands over to it)."""
        return ServiceKeys(self.log, self.issuer, self.service, {**self.log_ring, new.key_id: new})
