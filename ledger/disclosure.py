"""Salted commitments for what the log must not publish, in the manner of SD-JWT disclosures.

A restricted member of an entry body is not written into the leaf. In its place the body
lists, under ``"_sd"``, the digest of a *disclosure* of it:

    disclosure = BASE64URL(JCS([salt, name, value]))        salt: 16 random bytes, base64url
    digest     = BASE64URL(SHA-256(ASCII(disclosure)))       (no padding anywhere)

exactly as SD-JWT (RFC 9901 §4.2) discloses an object property, with the JSON in RFC 8785
canonical form so that one value has one disclosure. ``_sd`` holds the digests sorted.
Signatures cover the body as published (with ``_sd``), so anyone verifies them, the tree
and the checkpoints; the disclosures are kept beside the log and given only to the roles
allowed to read them (``ledger.publication``). A disclosure that does not hash to a
digest of its entry is refused, naming the entry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ledger.canonical import canonical_flat, parse_canonical
from ledger.errors import InvalidInput, VerificationError

SD = "_sd"
SALT_BYTES = 16
# What stands in an erased entry's disclosures (``ledger.erasure``): never a disclosure,
# since ":" is not in the base64url alphabet.
ERASED_PREFIX = "erased:"


def erasure_marker(erased_by: int) -> str:
    """The marker left for an entry whose disclosures the entry ``erased_by`` erased."""
    return f"{ERASED_PREFIX}{erased_by}"


def erased_by(disclosures: Sequence[str]) -> int | None:
    """The index of the erase entry that took these disclosures, if they were erased."""
    if len(disclosures) != 1 or not disclosures[0].startswith(ERASED_PREFIX):
        return None
    number = disclosures[0][len(ERASED_PREFIX) :]
    if not number.isdigit():
        raise VerificationError(f"a malformed erasure marker {disclosures[0]!r}")
    return int(number)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str, what: str) -> bytes:
    if not isinstance(text, str) or "=" in text or len(text) % 4 == 1:
        raise VerificationError(f"{what} is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise VerificationError(f"{what} is not unpadded base64url") from None


@dataclass(frozen=True)
class Disclosure:
    """One member, opened: its salt, name and value, and the text its digest is over."""

    salt: str
    name: str
    value: Any
    encoded: str

    @property
    def digest(self) -> str:
        return digest_of(self.encoded)


@lru_cache(maxsize=8192)
def digest_of(encoded: str) -> str:
    """The digest of a disclosure (remembered for the last few thousand: the edge makes a
    claim's digests for its body, the store orders its disclosures by them)."""
    return b64url(hashlib.sha256(encoded.encode("ascii")).digest())


def new_salt() -> str:
    return b64url(secrets.token_bytes(SALT_BYTES))


def disclose(name: str, value: Any, salt: str) -> Disclosure:
    encoded = b64url(canonical_flat((salt, name, value)))
    return Disclosure(salt, name, value, encoded)


def read_disclosure(encoded: str) -> Disclosure:
    """Parse a disclosure; refuse anything but a base64url JCS ``[salt, name, value]``."""
    raw = _b64url_decode(encoded, "a disclosure")
    try:
        # the audit opens every disclosure of the log: parse_canonical decides in C when it can
        parsed = parse_canonical(raw)
    except InvalidInput as exc:
        raise VerificationError(f"a disclosure is not RFC 8785 JSON: {exc.message}") from None
    if (
        not isinstance(parsed, list)
        or len(parsed) != 3
        or not isinstance(parsed[0], str)
        or not isinstance(parsed[1], str)
    ):
        raise VerificationError("a disclosure is a JSON array [salt, name, value]")
    return Disclosure(parsed[0], parsed[1], parsed[2], encoded)


def conceal(
    body: Mapping[str, Any], names: Iterable[str], salt: Callable[[], str] = new_salt
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``body`` with the members ``names`` replaced by their digests under ``_sd``, and the
    disclosures that open them (members absent from ``body`` are skipped)."""
    hidden = [n for n in names if n in body]
    if not hidden:
        return dict(body), ()
    if SD in body:
        raise InvalidInput(f"a body may not name a member {SD!r} itself")
    opened = [disclose(name, body[name], salt()) for name in hidden]
    published = {k: v for k, v in body.items() if k not in hidden}
    published[SD] = sorted(d.digest for d in opened)
    return published, tuple(d.encoded for d in opened)


def salted_by(salts: Mapping[str, str], names: Sequence[str]) -> Callable[[], str]:
    """A salt source that hands out ``salts[name]`` for each of ``names`` in turn (a body
    concealed elsewhere, with salts it chose, is concealed here again the same way)."""
    order = iter([salts[n] for n in names if n in salts])
    return lambda: next(order)


def digests(body: Mapping[str, Any]) -> list[str]:
    """The ``_sd`` digests a published body lists (refused if malformed)."""
    listed = body.get(SD, [])
    if not isinstance(listed, list) or not all(isinstance(d, str) for d in listed):
        raise InvalidInput(f"body.{SD} must be a list of digests", reason="MALFORMED_BODY")
    if listed != sorted(set(listed)):
        raise InvalidInput(f"body.{SD} must be sorted and without repeats", reason="MALFORMED_BODY")
    return listed


def reveal(
    body: Mapping[str, Any], disclosures: Iterable[str], *, complete: bool = True
) -> dict[str, Any]:
    """The body with its concealed members put back from ``disclosures``.

    Every disclosure must hash to a digest of the body (DISCLOSURE_MISMATCH otherwise) and
    open a member the body does not have in clear; with ``complete``, every digest must be
    opened (MISSING_DISCLOSURE otherwise).
    """
    listed = digests(body)
    if not listed:
        if any(True for _ in disclosures):
            raise VerificationError(
                "disclosures were given for a body that conceals nothing",
                reason="DISCLOSURE_MISMATCH",
            )
        return dict(body)
    opened: dict[str, Disclosure] = {}
    for encoded in disclosures:
        disclosure = read_disclosure(encoded)
        digest = disclosure.digest  # a SHA-256 each time it is asked for: the audit opens millions
        if digest not in listed:
            raise VerificationError(
                f"the disclosure of {disclosure.name!r} does not hash to a digest of the body",
                reason="DISCLOSURE_MISMATCH",
                details={"name": disclosure.name},
            )
        opened[digest] = disclosure
    if complete and len(opened) != len(listed):
        raise InvalidInput(
            f"{len(listed) - len(opened)} concealed member(s) of the body are not disclosed",
            reason="MISSING_DISCLOSURE",
        )
    revealed = {k: v for k, v in body.items() if k != SD}
    for disclosure in opened.values():
        if disclosure.name in revealed or disclosure.name == SD:
            raise VerificationError(
                f"a disclosure opens member {disclosure.name!r} twice",
                reason="DISCLOSURE_MISMATCH",
            )
        revealed[disclosure.name] = disclosure.value
    return revealed
