"""``suanli voucher verify``: a holder checks a voucher offline with the issuer's JWK Set."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from grpc_fixtures import START, ManualClock, issue_voucher
from typer.testing import CliRunner

from api.cli import app
from api.http.app import create_app
from ledger.credential import b64url, b64url_decode
from ledger.keys import Signer
from ledger.timeutil import format_time


def _verify(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["voucher", "verify", *args])
    return result.exit_code, result.output


def test_a_holder_verifies_a_voucher_offline(open_service, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    service = open_service(db_url, clock=ManualClock(START))
    voucher = issue_voucher(service)
    state = service.ledger.snapshot()
    from ledger import vouchers

    issued = vouchers.voucher_of(state, voucher)
    token = str(issued.credential)
    with TestClient(create_app(service)) as http:
        jwks = http.get("/v1/issuer/jwks").json()
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks))
    token_file = tmp_path / "voucher.jwt"
    token_file.write_text(token + "\n")

    during = format_time(issued.valid_from + timedelta(days=1))
    status, output = _verify(str(token_file), "--jwks", str(jwks_file), "--at", during)
    assert status == 0, output
    assert output.startswith("OK: signature verified with issuer key")
    assert voucher in output and issued.holder in output and "valid at" in output

    after = format_time(issued.valid_until + timedelta(seconds=1))
    status, output = _verify(token, "--jwks", str(jwks_file), "--at", after)
    assert status == 1 and "NOT VALID" in output and "expired" in output

    head, body, sig = token.split(".")
    payload = json.loads(b64url_decode(body))
    payload["face_value_fen"] += 100  # a richer voucher than the one issued
    forged = ".".join([head, b64url(json.dumps(payload, separators=(",", ":")).encode()), sig])
    status, output = _verify(forged, "--jwks", str(jwks_file), "--at", during)
    assert status == 1 and output.startswith("FAIL")

    stranger = Signer.generate("issuer")  # same name, another key: another kid
    other = tmp_path / "other.json"
    from ledger.credential import issuer_jwk

    other.write_text(json.dumps({"keys": [issuer_jwk(stranger.verifier)]}))
    status, output = _verify(token, "--jwks", str(other), "--at", during)
    assert status == 1 and "has no key" in output
