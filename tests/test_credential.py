"""The voucher credential: a JWT in compact JWS form, EdDSA/Ed25519 (RFC 7519, 7515, 8037).

The design (DESIGN.md "Formats") asks for an offline-verifiable credential that any
standard library verifies with only the issuer's public key; these tests verify issued
vouchers with two JOSE libraries (joserfc, the one the project uses, and PyJWT), given
nothing but the issuer's OKP JWK, and let each enforce the registered claims itself.
"""

from __future__ import annotations

import json
import time
import warnings

import pytest
from domain_helpers import World, wan
from joserfc import jws
from joserfc.errors import BadSignatureError, SecurityWarning
from joserfc.jwk import OKPKey

from ledger.credential import b64url, issuer_jwk, read_voucher, sign_voucher, verify_voucher
from ledger.errors import VerificationError
from ledger.keys import Signer
from ledger.timeutil import parse_time
from ledger.vouchers import voucher_view


def _joserfc_verify(token: str, jwk: dict[str, str]) -> jws.CompactSignature:
    """joserfc warns that RFC 9864 deprecates "EdDSA" (in favour of "Ed25519"); the brief
    asks for RFC 8037 EdDSA, which verifiers still accept. The warning is expected."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=SecurityWarning, message=".*RFC 9864.*")
        return jws.deserialize_compact(token, OKPKey.import_key(jwk), algorithms=["EdDSA"])


def test_issued_voucher_verifies_with_joserfc_and_only_the_public_key() -> None:
    """二、(四): the 算力券 of an approved project, checked as a centre would, offline."""
    world = World()
    voucher_id = world.voucher("industry")
    token = voucher_view(world.state, voucher_id)["credential"]
    jwk = issuer_jwk(world.issuer.verifier)
    assert set(jwk) == {"kty", "crv", "x", "kid"} and jwk["kty"] == "OKP"
    obj = _joserfc_verify(token, jwk)
    assert obj.protected == {
        "alg": "EdDSA",
        "kid": world.issuer.key_id,
        "typ": "suanli-voucher+jwt",
    }
    payload = json.loads(obj.payload)
    issued = world.entries[-1].body
    registered = {k: payload.pop(k) for k in ("iss", "sub", "jti", "iat", "nbf", "exp")}
    assert payload == {k: v for k, v in issued.items() if k != "credential"}
    assert registered["iss"] == world.state.registry.origin
    assert (registered["sub"], registered["jti"]) == (issued["holder"], voucher_id)
    assert registered["nbf"] == int(parse_time(issued["valid"]["from"]).timestamp())
    assert registered["exp"] == int(parse_time(issued["valid"]["until"]).timestamp())
    assert abs(registered["iat"] - world.clock.timestamp()) < 2
    assert payload["voucher"] == voucher_id
    assert payload["holder"] == issued["holder"]
    assert payload["face_value_fen"] == wan(300)
    assert payload["rate_bp"] == 3000
    assert payload["log_index"] == len(world.entries) - 1
    assert payload["issuer_key"] == world.issuer.key_id
    assert payload["centres"] == ["nscc-cd", "cd-icc"]


def test_joserfc_rejects_another_key_and_a_tampered_payload() -> None:
    world = World()
    voucher = world.voucher("industry")
    token = voucher_view(world.state, voucher)["credential"]
    other = issuer_jwk(Signer.generate("city-issuer").verifier)
    with pytest.raises(BadSignatureError):
        _joserfc_verify(token, other)
    head, _, sig = token.split(".")
    payload = dict(read_voucher(token)[1])
    payload["face_value_fen"] = wan(3000)
    forged = f"{head}.{b64url(json.dumps(payload).encode())}.{sig}"
    with pytest.raises(BadSignatureError):
        _joserfc_verify(forged, issuer_jwk(world.issuer.verifier))
    with pytest.raises(VerificationError):
        verify_voucher(forged, world.issuer.verifier)


def test_token_is_deterministic_and_canonical() -> None:
    signer = Signer(name="issuer", seed=bytes(range(32)))
    payload = {"voucher": "V1", "holder": "91350100M000100Y43", "face_value_fen": 1}
    token = sign_voucher(payload, signer)
    assert token == sign_voucher(dict(reversed(payload.items())), signer)
    assert "=" not in token and token.count(".") == 2
    header, body = read_voucher(token)
    assert header == {"alg": "EdDSA", "kid": signer.key_id, "typ": "suanli-voucher+jwt"}
    assert body == payload
    assert verify_voucher(token, signer.verifier) == payload


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t + ".x",
        lambda t: t.replace(".", "=.", 1),
        lambda t: "e30." + t.split(".", 1)[1],  # header {}
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BA"),
    ],
)
def test_verify_refuses_malformed_tokens(mangle: object) -> None:
    signer = Signer(name="issuer", seed=bytes(32))
    token = sign_voucher({"voucher": "V1"}, signer)
    with pytest.raises(VerificationError):
        verify_voucher(mangle(token), signer.verifier)  # type: ignore[operator]


def test_non_canonical_payload_is_refused_even_if_signed() -> None:
    """The fold compares payload to body; a non-canonical serialisation is refused outright
    so that one voucher has exactly one token."""
    signer = Signer(name="issuer", seed=bytes(32))
    head = b64url(
        json.dumps({"alg": "EdDSA", "kid": signer.key_id, "typ": "suanli-voucher+jwt"}).encode()
    )
    body = b64url(b'{"voucher": "V1"}')
    sig = b64url(signer.sign(f"{head}.{body}".encode()))
    with pytest.raises(VerificationError):
        verify_voucher(f"{head}.{body}.{sig}", signer.verifier)


def _voucher_at(when: str) -> tuple[World, str, dict[str, str]]:
    world = World().at(when)
    voucher = world.voucher("industry")
    token = voucher_view(world.state, voucher)["credential"]
    return world, token, issuer_jwk(world.issuer.verifier)


def _a_day_in(token: str) -> int:
    """A moment a day after the voucher was both issued and valid (NumericDate)."""
    claims = read_voucher(token)[1]
    return max(claims["iat"], claims["nbf"]) + 86_400


def test_pyjwt_verifies_a_voucher_and_enforces_its_registered_claims() -> None:
    """A second JOSE library, with only the JWKS: signature, type, issuer, holder, validity."""
    import jwt

    world, token, jwk = _voucher_at("2023-08-20 10:00")
    key = jwt.PyJWK(jwk)
    assert jwt.get_unverified_header(token)["typ"] == "suanli-voucher+jwt"
    issued = world.entries[-1].body
    inside = _a_day_in(token)
    claims = jwt.decode(
        token,
        key,
        algorithms=["EdDSA"],
        issuer=world.state.registry.origin,
        subject=issued["holder"],
        options={"require": ["iss", "sub", "jti", "iat", "nbf", "exp"]},
        leeway=-(inside - time.time()),  # as checked a day into its validity
    )
    assert claims["jti"] == issued["voucher"] and claims["face_value_fen"] == wan(300)
    # past its validity every JWT library refuses it, with no suanli code involved
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(token, key, algorithms=["EdDSA"], issuer=world.state.registry.origin)
    with pytest.raises(jwt.InvalidSignatureError):
        other = jwt.PyJWK(issuer_jwk(Signer.generate("city-issuer").verifier))
        jwt.decode(token, other, algorithms=["EdDSA"], options={"verify_exp": False})


def test_joserfc_enforces_the_registered_claims() -> None:
    from joserfc import jwt as jose_jwt
    from joserfc.errors import ExpiredTokenError

    world, token, jwk = _voucher_at("2023-08-20 10:00")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=SecurityWarning, message=".*RFC 9864.*")
        decoded = jose_jwt.decode(token, OKPKey.import_key(jwk), algorithms=["EdDSA"])
    issued = world.entries[-1].body
    inside = _a_day_in(token)
    registry = jose_jwt.JWTClaimsRegistry(
        now=inside,  # a day into its validity
        iss={"essential": True, "value": world.state.registry.origin},
        sub={"essential": True, "value": issued["holder"]},
        jti={"essential": True, "value": issued["voucher"]},
    )
    registry.validate(decoded.claims)
    with pytest.raises(ExpiredTokenError):
        jose_jwt.JWTClaimsRegistry().validate(decoded.claims)  # today: expired
