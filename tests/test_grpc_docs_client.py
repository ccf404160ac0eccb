"""A centre's client written from docs/grpc.md alone: it conceals and signs a claim with the
standard library and a bare Ed25519 key (no suanli code), and the real server accepts it.

Only the protocol buffer stubs (the contract) and the development TLS files are shared with
the project; the concealment, the canonical JSON and the signature follow the page."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc_fixtures import GrpcEnv, grpc_env, grpc_env_factory
from suanli.v1 import redemption_pb2 as pb
from suanli.v1 import redemption_pb2_grpc as pb_grpc

from ledger.fold import opened

__all__ = ["grpc_env", "grpc_env_factory"]

CONCEALED = ("record_id", "resource", "quantity", "start", "end")  # docs/grpc.md, salts


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jcs(value: Any) -> bytes:
    # RFC 8785 for these ASCII member names, strings and small integers.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_claim(
    body: dict[str, Any], at: str, seed: bytes, key_id: str
) -> tuple[dict[str, str], bytes]:
    """(salts, signature) for a claim, as docs/grpc.md "Signed writes" says."""
    salts = {name: b64url(secrets.token_bytes(16)) for name in CONCEALED}
    published = {k: v for k, v in body.items() if k not in CONCEALED}
    digests = []
    for name in CONCEALED:
        disclosure = b64url(jcs([salts[name], name, body[name]]))
        digests.append(b64url(hashlib.sha256(disclosure.encode("ascii")).digest()))
    published["_sd"] = sorted(digests)
    message = b"suanli-entry/v1\n" + jcs({"v": 1, "kind": "claim", "at": at, "body": published})
    return salts, Ed25519PrivateKey.from_private_bytes(seed).sign(message)


def test_a_claim_signed_from_the_docs_alone_is_accepted(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher()
    usage = grpc_env.usage(24_000, "docs-client-1")
    signer = grpc_env.service.centre_keys["nscc-cd"]
    body = {
        "centre": "nscc-cd",
        "record_id": usage.record_id,
        "voucher": voucher,
        "resource": usage.resource,
        "quantity": usage.quantity,
        "start": usage.start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "end": usage.end.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "cost_fen": 24_000,
    }
    at = grpc_env.clock().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    salts, signature = sign_claim(body, at, signer.seed, signer.key_id)

    files = grpc_env.data_dir / "centres" / "nscc-cd"
    credentials = grpc.ssl_channel_credentials(
        (files / "ca.pem").read_bytes(),
        (files / "client.key").read_bytes(),
        (files / "client.pem").read_bytes(),
    )
    with grpc.secure_channel(grpc_env.target, credentials) as channel:
        stub = pb_grpc.RedemptionStub(channel)
        request = pb.ClaimRequest(
            body=pb.ClaimBody(**body), at=at, key_id=signer.key_id, signature=signature, salts=salts
        )
        result = stub.Claim(request, timeout=10)
    assert result.subsidy_fen > 0 and not result.replayed
    (entry,) = grpc_env.ledger.store.read(result.log_index, result.log_index + 1)
    assert "record_id" not in entry.body and len(entry.body["_sd"]) == 5
    assert opened(entry).body["record_id"] == "docs-client-1"
