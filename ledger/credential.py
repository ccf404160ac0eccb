"""The voucher credential: a compact JWS (RFC 7515) with EdDSA over Ed25519 (RFC 8037).

Anyone holding only the issuer's public key can verify a voucher offline with any JOSE
library: the issuer's key as a JWK is ``{"kty": "OKP", "crv": "Ed25519", "x": <base64url
public key>}`` (:func:`issuer_jwk`).

The token is a JWT (RFC 7519) in compact JWS form, ``BASE64URL(header) "."
BASE64URL(payload) "." BASE64URL(signature)``, with

* header ``{"alg": "EdDSA", "kid": <issuer key id>, "typ": "suanli-voucher+jwt"}``: typed
  explicitly (RFC 8725 §3.11), so that no other kind of JWT passes for a voucher;
* payload: the JWT registered claims, so that every JOSE/JWT library enforces the voucher's
  validity on its own —

  ====== ========================================================================
  ``iss``  the ledger that issued it: the log's origin
  ``sub``  the holder's 统一社会信用代码 (a voucher is not transferable)
  ``jti``  the voucher id
  ``iat``  when the issuer signed it (NumericDate; within 5 minutes of the entry's time)
  ``nbf``  the start of its validity (``valid.from``, NumericDate, seconds)
  ``exp``  the end of its validity (``valid.until``, NumericDate, seconds)
  ====== ========================================================================

  and beside them the ``voucher.issue`` body without its ``credential`` member (voucher id,
  holder, programme, face value, rate, usage window, validity, periods, accepted centres,
  issuer key id, log index, policy version);
* signature: Ed25519 over the ASCII bytes ``BASE64URL(header) "." BASE64URL(payload)``.

Header and payload are serialised in RFC 8785 canonical form, so that the same voucher
always has the same token, and base64url is unpadded (RFC 7515 §2). The fold refuses a
``voucher.issue`` whose token does not verify with the issuing key or whose payload is not
exactly the body: the credential is bound to its issuance entry in the log.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.canonical import canonical_bytes
from ledger.errors import VerificationError
from ledger.keys import Signer, Verifier
from ledger.timeutil import parse_ledger_time

ALG = "EdDSA"
TYP = "suanli-voucher+jwt"
REGISTERED = ("iss", "sub", "jti", "iat", "nbf", "exp")
IAT_SKEW_SECONDS = 300


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if "=" in text or not all(c.isalnum() or c in "-_" for c in text) or len(text) % 4 == 1:
        raise VerificationError(f"not unpadded base64url: {text[:40]!r}")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(f"not base64url: {exc}") from None


def sign_voucher(payload: Mapping[str, Any], issuer: Signer) -> str:
    """The compact JWS of ``payload`` signed by ``issuer`` (kid = the issuer's key id)."""
    header = {"alg": ALG, "kid": issuer.key_id, "typ": TYP}
    signing_input = f"{b64url(canonical_bytes(header))}.{b64url(canonical_bytes(dict(payload)))}"
    signature = issuer.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url(signature)}"


def read_voucher(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a token into (header, payload) without verifying; raise VerificationError."""
    if not isinstance(token, str):
        raise VerificationError("a voucher credential is a compact JWS string")
    parts = token.split(".")
    if len(parts) != 3:
        raise VerificationError("a compact JWS has three dot-separated parts")
    try:
        header = json.loads(b64url_decode(parts[0]))
        payload = json.loads(b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerificationError(f"JWS header or payload is not JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise VerificationError("JWS header and payload must be JSON objects")
    return header, payload


def verify_voucher(token: str, issuer: Verifier) -> dict[str, Any]:
    """Verify ``token`` with the issuer's public key and return its payload.

    Raises VerificationError if the header is not ``alg: EdDSA`` with the issuer's ``kid``
    and ``typ``, if anything is not canonical, or if the signature does not verify.
    """
    header, payload = read_voucher(token)
    if header != {"alg": ALG, "kid": issuer.key_id, "typ": TYP}:
        raise VerificationError(
            f"voucher credential header must be alg {ALG}, kid {issuer.key_id}, typ {TYP}; "
            f"got {header}"
        )
    head, body, sig = token.split(".")
    if head != b64url(canonical_bytes(header)) or body != b64url(canonical_bytes(payload)):
        raise VerificationError("voucher credential header or payload is not in canonical form")
    issuer.verify(f"{head}.{body}".encode("ascii"), b64url_decode(sig))
    return payload


def numeric_date(moment: datetime) -> int:
    """RFC 7519 NumericDate: whole seconds since 1970-01-01 UTC (rounded down)."""
    return math.floor(moment.timestamp())


def registered_claims(body: Mapping[str, Any], origin: str, issued_at: datetime) -> dict[str, Any]:
    """The JWT registered claims of a voucher whose ``voucher.issue`` body is ``body``."""
    return {
        "iss": origin,
        "sub": body["holder"],
        "jti": body["voucher"],
        "iat": numeric_date(issued_at),
        "nbf": numeric_date(parse_ledger_time(body["valid"]["from"])),
        "exp": numeric_date(parse_ledger_time(body["valid"]["until"])),
    }


def issuer_jwk(issuer: Verifier) -> dict[str, str]:
    """The issuer's public key as an RFC 8037 OKP JWK, for standard JOSE libraries."""
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(issuer.public), "kid": issuer.key_id}


def verifier_from_jwk(jwk: Mapping[str, Any]) -> Verifier:
    """The issuer key a JWK (RFC 8037 OKP, Ed25519) with a suanli ``kid`` stands for."""
    if not isinstance(jwk, Mapping) or (jwk.get("kty"), jwk.get("crv")) != ("OKP", "Ed25519"):
        raise VerificationError("an issuer JWK is kty OKP, crv Ed25519")
    kid, x = jwk.get("kid"), jwk.get("x")
    if not isinstance(kid, str) or not isinstance(x, str):
        raise VerificationError("an issuer JWK has a kid and an x")
    verifier = Verifier(kid.partition("+")[0], b64url_decode(x))
    if verifier.key_id != kid:
        raise VerificationError(f"JWK kid {kid!r} does not name its key ({verifier.key_id})")
    return verifier


@dataclass(frozen=True)
class VoucherCheck:
    """What a voucher credential says, once its signature verified with the issuer's key,
    and whether it is within its validity at ``at``: ``valid``, ``not yet valid`` or
    ``expired``. (Suspension and revocation are in the log, not in the token.)"""

    payload: dict[str, Any]
    issuer: str
    at: datetime
    validity: str

    @property
    def valid(self) -> bool:
        return self.validity == "valid"


def check_voucher(token: str, jwks: Mapping[str, Any], at: datetime) -> VoucherCheck:
    """Verify ``token`` offline with the issuer's JWK Set (``/v1/issuer/jwks``) at ``at``."""
    header, _ = read_voucher(token.strip())
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        raise VerificationError('a JWK Set is an object {"keys": [...]}')
    found = [k for k in keys if isinstance(k, Mapping) and k.get("kid") == header.get("kid")]
    if not found:
        raise VerificationError(f"the JWK Set has no key {header.get('kid')!r} (the token's kid)")
    issuer = verifier_from_jwk(found[0])
    payload = verify_voucher(token.strip(), issuer)
    now = numeric_date(at)
    if not (isinstance(payload.get("nbf"), int) and isinstance(payload.get("exp"), int)):
        raise VerificationError("a voucher credential carries nbf and exp")
    validity = (
        "not yet valid" if now < payload["nbf"] else "expired" if now >= payload["exp"] else "valid"
    )
    return VoucherCheck(payload, issuer.key_id, at, validity)
