"""Every refusal over gRPC: its status code, its ErrorInfo reason, and that it wrote nothing.

``REFUSALS`` is the table of docs/grpc.md; a test keeps the two the same.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_fixtures import (
    USAGE_START,
    GrpcEnv,
    grpc_env,
    grpc_env_factory,
    local,
    set_voucher_status,
)
from grpc_status import rpc_status
from suanli.v1 import redemption_pb2 as pb

from adapters.client import RedemptionClient, RedemptionError, sign_entry
from api.devpki import _load_cert, _load_key, _make_leaf, centre_files, tls_dir
from api.errors import ERROR_DOMAIN
from api.grpc.messages import MAX_RECEIVE
from ledger.errors import InvalidInput
from ledger.keys import Signer
from ledger.limits import MAX_CLAIMS_PER_MESSAGE
from ledger.timeutil import format_time

__all__ = ["grpc_env", "grpc_env_factory"]  # fixtures used here

C = grpc.StatusCode
REFUSALS: dict[str, C] = {
    # the voucher
    "UNKNOWN_VOUCHER": C.NOT_FOUND,
    "VOUCHER_NOT_YET_VALID": C.FAILED_PRECONDITION,
    "VOUCHER_EXPIRED": C.FAILED_PRECONDITION,
    "VOUCHER_SUSPENDED": C.FAILED_PRECONDITION,
    "VOUCHER_REVOKED": C.FAILED_PRECONDITION,
    "CENTRE_NOT_ACCEPTED": C.FAILED_PRECONDITION,
    # the usage
    "USAGE_OUTSIDE_WINDOW": C.FAILED_PRECONDITION,
    "UNKNOWN_RESOURCE": C.INVALID_ARGUMENT,
    "MALFORMED_QUANTITY": C.INVALID_ARGUMENT,
    "MALFORMED_TIME": C.INVALID_ARGUMENT,
    "OUT_OF_RANGE": C.INVALID_ARGUMENT,
    "MALFORMED_RECORD": C.INVALID_ARGUMENT,
    "COST_MISMATCH": C.INVALID_ARGUMENT,
    "ALREADY_REIMBURSED": C.FAILED_PRECONDITION,
    # the caps and exactly-once
    "CAP_EXHAUSTED": C.RESOURCE_EXHAUSTED,
    "ALREADY_CLAIMED": C.ALREADY_EXISTS,
    # holds
    "UNKNOWN_HOLD": C.NOT_FOUND,
    "HOLD_EXPIRED": C.FAILED_PRECONDITION,
    "HOLD_CLOSED": C.ALREADY_EXISTS,
    "HOLD_EXISTS": C.ALREADY_EXISTS,
    # who signed, and the transport
    "CENTRE_MISMATCH": C.PERMISSION_DENIED,
    "CERTIFICATE_MISMATCH": C.PERMISSION_DENIED,
    "UNKNOWN_KEY": C.PERMISSION_DENIED,
    "BAD_SIGNATURE": C.PERMISSION_DENIED,
    "CLOCK_SKEW": C.FAILED_PRECONDITION,
    "MESSAGE_TOO_LARGE": C.RESOURCE_EXHAUSTED,
    "TOO_MANY_CLAIMS": C.RESOURCE_EXHAUSTED,
    "MALFORMED_MESSAGE": C.INVALID_ARGUMENT,
    "NO_CENTRE_CERTIFICATE": C.UNAUTHENTICATED,
    "BAD_CREDENTIAL": C.INVALID_ARGUMENT,
}

DOCS = Path(__file__).resolve().parent.parent / "docs" / "grpc.md"


# --- sending what the friendly client would not send -----------------------------------


def claim_body(env: GrpcEnv, voucher: str, record: str, cost: int = 10_000, **change: Any) -> Any:
    usage = env.usage(cost, record, centre=change.pop("centre", "nscc-cd"))
    body = {
        "centre": usage.centre,
        "record_id": usage.record_id,
        "voucher": voucher,
        "resource": usage.resource,
        "quantity": usage.quantity,
        "start": format_time(usage.start),
        "end": format_time(usage.end),
        "cost_fen": cost,
    }
    body.update(change)
    return pb.ClaimBody(**body)


def send(
    client: RedemptionClient,
    rpc: str,
    body: Any,
    *,
    kind: str | None = None,
    signer: Signer | None = None,
    at: str | None = None,
    tamper: bool = False,
) -> Any:
    """Sign ``body`` (as the client would, or with another key / time) and call ``rpc``."""
    kind = (
        kind or {"Claim": "claim", "Authorize": "hold", "Capture": "capture", "Void": "void"}[rpc]
    )
    request_type = {
        "Claim": pb.ClaimRequest,
        "Authorize": pb.AuthorizeRequest,
        "Capture": pb.CaptureRequest,
        "Void": pb.VoidRequest,
    }[rpc]
    signer = signer or client.signer
    at = at or format_time(client.clock())
    try:
        fields = sign_entry(kind, body, signer, at).fields(request_type.DESCRIPTOR.name)
    except InvalidInput:  # a body that has no canonical form: the server refuses it first
        fields = {"at": at, "key_id": signer.key_id, "signature": bytes(64)}
    if tamper:
        signature = fields["signature"]
        fields["signature"] = bytes([signature[0] ^ 1]) + signature[1:]
    request = request_type(body=body, **fields)
    try:
        return getattr(client.stub, rpc)(request, timeout=10)
    except grpc.RpcError as error:
        raise RedemptionError.from_rpc(error) from None


def refused(env: GrpcEnv, reason: str, call: Callable[[], object]) -> RedemptionError:
    """``call`` must be refused with ``reason`` and its code, and write nothing."""
    size = env.log_size()
    with pytest.raises(RedemptionError) as caught:
        call()
    error = caught.value
    assert error.reason == reason, error
    assert error.code == REFUSALS[reason], error
    assert env.log_size() == size, f"{reason}: a refusal wrote to the log"
    return error


# --- the voucher -------------------------------------------------------------------------


def test_usage_already_reimbursed(grpc_env: GrpcEnv) -> None:
    """Usage the holder claimed back post hoc at this centre (docs/reimbursement.md)."""
    from test_reimbursement import invoice, posthoc_policy

    from ledger import vouchers
    from ledger.usecases.commands.reimbursement import submit_reimbursement
    from ledger.usecases.commands.round import publish_round

    voucher = grpc_env.voucher()
    holder = vouchers.voucher_of(grpc_env.ledger.refresh(), voucher).holder
    service = grpc_env.service
    service.write(publish_round, posthoc_policy(2023))
    service.write(
        submit_reimbursement,
        claim="R-grpc",
        round="posthoc-test-2023",
        programme="compute-use",
        claimant=holder,
        provider={
            "name": "国家超算成都中心",
            "uscc": invoice("x", 1)["issuer"],
            "centre": "nscc-cd",
        },
        period=("2023-01-01", "2023-07-31"),
        amount_paid_fen=1_000_000,
        invoices=[invoice("INV-grpc", 1_000_000)],
        evidence={"contract": "0" * 64, "payment": "1" * 64},
    )
    client = grpc_env.client()
    error = refused(
        grpc_env,
        "ALREADY_REIMBURSED",
        lambda: client.claim(grpc_env.usage(10_000, "reimbursed"), voucher, 10_000),
    )
    assert error.metadata["claim"] == "R-grpc"


def test_unknown_voucher(grpc_env: GrpcEnv) -> None:
    client = grpc_env.client()
    refused(
        grpc_env,
        "UNKNOWN_VOUCHER",
        lambda: send(client, "Claim", claim_body(grpc_env, "V-x", "u1")),
    )
    refused(grpc_env, "UNKNOWN_VOUCHER", lambda: client.balance("V-x"))
    refused(grpc_env, "UNKNOWN_VOUCHER", lambda: client.verify_voucher("V-x"))


def test_voucher_not_yet_valid(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher(valid_from=local("2023-09-01 00:00"))
    client = grpc_env.client()
    refused(
        grpc_env,
        "VOUCHER_NOT_YET_VALID",
        lambda: client.claim(grpc_env.usage(10_000, "nyv"), voucher, 10_000),
    )


def test_voucher_expired(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher(valid_until=local("2023-08-21 00:00"))
    client = grpc_env.client()
    grpc_env.clock.set(local("2023-08-22 09:00"))  # the centre's clock moves with the service's
    error = refused(
        grpc_env,
        "VOUCHER_EXPIRED",
        lambda: client.claim(grpc_env.usage(10_000, "exp"), voucher, 10_000),
    )
    assert error.metadata["valid_until"] == "2023-08-20T16:00:00.000000Z"


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("voucher.suspend", "VOUCHER_SUSPENDED"), ("voucher.revoke", "VOUCHER_REVOKED")],
)
def test_voucher_suspended_or_revoked(grpc_env: GrpcEnv, kind: str, reason: str) -> None:
    voucher = grpc_env.voucher()
    set_voucher_status(grpc_env.service, voucher, kind)
    client = grpc_env.client()
    refused(grpc_env, reason, lambda: client.claim(grpc_env.usage(10_000, "s"), voucher, 10_000))
    answer = client.verify_voucher(voucher)
    assert not answer.usable and answer.reason == reason


def test_centre_not_accepted(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher(centres=["nscc-cd"])
    client = grpc_env.client("cd-icc")
    usage = grpc_env.usage(10_000, "icc-1", centre="cd-icc")
    refused(grpc_env, "CENTRE_NOT_ACCEPTED", lambda: client.claim(usage, voucher, 10_000))
    refused(grpc_env, "CENTRE_NOT_ACCEPTED", lambda: client.balance(voucher))


# --- the usage ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            {"start": "2023-08-05T00:00:00.000000Z", "end": "2023-08-05T01:00:00.000000Z"},
            "USAGE_OUTSIDE_WINDOW",
        ),
        ({"resource": "gpu:tpu-v9"}, "UNKNOWN_RESOURCE"),
        ({"quantity": 0}, "MALFORMED_QUANTITY"),
        ({"quantity": -5}, "MALFORMED_QUANTITY"),
        ({"quantity": 2**60}, "OUT_OF_RANGE"),
        ({"cost_fen": 2**62}, "OUT_OF_RANGE"),
        ({"end": "9999-12-31T23:59:59.000000Z"}, "OUT_OF_RANGE"),
        ({"start": "0001-01-01T00:00:00.000000Z"}, "OUT_OF_RANGE"),
        ({"start": "yesterday"}, "MALFORMED_TIME"),
        ({"start": "2023-03-01T01:00:00.000Z"}, "MALFORMED_TIME"),
        ({"end": "2023-03-01T10:00:00+08:00"}, "MALFORMED_TIME"),
        ({"end": "2023-02-01T00:00:00.000000Z"}, "MALFORMED_TIME"),
        ({"record_id": "no spaces allowed"}, "MALFORMED_RECORD"),
        ({"cost_fen": 10_001}, "COST_MISMATCH"),
    ],
)
def test_bad_usage(grpc_env: GrpcEnv, change: dict[str, Any], reason: str) -> None:
    voucher = grpc_env.voucher()
    client = grpc_env.client()
    body = claim_body(grpc_env, voucher, "bad-usage", **change)
    error = refused(grpc_env, reason, lambda: send(client, "Claim", body))
    if reason == "COST_MISMATCH":
        assert (error.metadata["claimed_fen"], error.metadata["rate_card_fen"]) == (
            "10001",
            "10000",
        )


def test_malformed_signed_time(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher()
    client = grpc_env.client()
    body = claim_body(grpc_env, voucher, "bad-at")
    refused(grpc_env, "MALFORMED_TIME", lambda: send(client, "Claim", body, at="now-ish"))


# --- caps and exactly-once ---------------------------------------------------------------


def test_cap_exhausted_names_the_cap(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher(face_value_fen=100_000)  # the round's minimum, 1,000 元
    client = grpc_env.client()
    first = client.claim(grpc_env.usage(1_000_000, "cap-1"), voucher, 1_000_000)
    assert (first.subsidy_fen, first.bound_by, first.voucher_balance_fen) == (100_000, "voucher", 0)
    error = refused(
        grpc_env,
        "CAP_EXHAUSTED",
        lambda: client.claim(grpc_env.usage(100_000, "cap-2"), voucher, 100_000),
    )
    assert error.metadata["cap"] == "voucher"


def test_already_claimed_with_another_body(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher()
    client = grpc_env.client()
    client.claim(grpc_env.usage(10_000, "twice"), voucher, 10_000)
    other = grpc_env.voucher()
    error = refused(
        grpc_env,
        "ALREADY_CLAIMED",
        lambda: client.claim(grpc_env.usage(10_000, "twice"), other, 10_000),
    )
    assert error.metadata["diff.voucher"] == f"{voucher!r} -> {other!r}"


# --- holds -------------------------------------------------------------------------------


def _hold(env: GrpcEnv, client: RedemptionClient, hold_id: str, minutes: float = 60) -> str:
    voucher = env.voucher("ai-model")
    client.authorize(hold_id, voucher, 100_000, env.clock() + timedelta(minutes=minutes))
    return voucher


def test_unknown_hold(grpc_env: GrpcEnv) -> None:
    client = grpc_env.client()
    usage = grpc_env.usage(10_000, "uh")
    refused(grpc_env, "UNKNOWN_HOLD", lambda: client.capture("no-such-hold", usage, 10_000))
    refused(grpc_env, "UNKNOWN_HOLD", lambda: client.void("no-such-hold"))


def test_hold_expired(grpc_env: GrpcEnv) -> None:
    client = grpc_env.client()
    _hold(grpc_env, client, "short", minutes=1)
    grpc_env.clock.advance(minutes=2)
    usage = grpc_env.usage(10_000, "late")
    refused(grpc_env, "HOLD_EXPIRED", lambda: client.capture("short", usage, 10_000))


def test_hold_closed(grpc_env: GrpcEnv) -> None:
    client = grpc_env.client()
    _hold(grpc_env, client, "closed")
    client.void("closed")
    usage = grpc_env.usage(10_000, "after-void")
    refused(grpc_env, "HOLD_CLOSED", lambda: client.capture("closed", usage, 10_000))
    _hold(grpc_env, client, "captured")
    client.capture("captured", grpc_env.usage(10_000, "cap-ok"), 10_000)
    refused(grpc_env, "HOLD_CLOSED", lambda: client.void("captured"))


def test_hold_id_reused_with_another_body(grpc_env: GrpcEnv) -> None:
    client = grpc_env.client()
    voucher = _hold(grpc_env, client, "reused")
    error = refused(
        grpc_env,
        "HOLD_EXISTS",
        lambda: client.authorize("reused", voucher, 999_999, grpc_env.clock() + timedelta(hours=1)),
    )
    assert "diff.estimated_cost_fen" in error.metadata


def test_malformed_hold(grpc_env: GrpcEnv) -> None:
    client = grpc_env.client()
    voucher = grpc_env.voucher("ai-model")
    body = pb.HoldBody(
        centre="nscc-cd",
        hold_id="h-bad",
        voucher=voucher,
        estimated_cost_fen=1000,
        expires_at=format_time(grpc_env.clock() - timedelta(minutes=1)),  # already past
    )
    refused(grpc_env, "MALFORMED_TIME", lambda: send(client, "Authorize", body))


# --- who signed, and the transport -----------------------------------------------------


def test_centre_mismatch_key_of_another_centre(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher()
    client = grpc_env.client("nscc-cd")
    other_key = grpc_env.service.centre_keys["cd-icc"]
    body = claim_body(grpc_env, voucher, "cm")
    error = refused(
        grpc_env, "CENTRE_MISMATCH", lambda: send(client, "Claim", body, signer=other_key)
    )
    assert error.metadata["signed_by"] == "cd-icc"  # decided by the fold, which names it so


def test_certificate_mismatch(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher()
    client = grpc_env.client("nscc-cd")
    icc_key = grpc_env.service.centre_keys["cd-icc"]
    body = claim_body(grpc_env, voucher, "cert", centre="cd-icc")
    error = refused(
        grpc_env, "CERTIFICATE_MISMATCH", lambda: send(client, "Claim", body, signer=icc_key)
    )
    assert error.metadata == {"certificate_centre": "nscc-cd", "body_centre": "cd-icc"}
    # Holds and voids too: a centre touches only its own.
    void = pb.VoidBody(centre="cd-icc", hold_id="x")
    refused(grpc_env, "CERTIFICATE_MISMATCH", lambda: send(client, "Void", void, signer=icc_key))


def test_unknown_key(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher()
    client = grpc_env.client()
    stranger = Signer.generate("nscc-cd")
    body = claim_body(grpc_env, voucher, "uk")
    refused(grpc_env, "UNKNOWN_KEY", lambda: send(client, "Claim", body, signer=stranger))


def test_bad_signature(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher()
    client = grpc_env.client()
    body = claim_body(grpc_env, voucher, "bs")
    refused(grpc_env, "BAD_SIGNATURE", lambda: send(client, "Claim", body, tamper=True))
    # A signature over another kind (a hold's signature replayed as a claim) fails too.
    refused(grpc_env, "BAD_SIGNATURE", lambda: send(client, "Claim", body, kind="capture"))
    # ... and a short one.
    request = pb.ClaimRequest(
        body=body, at=format_time(client.clock()), key_id=client.signer.key_id, signature=b"x"
    )
    refused(grpc_env, "BAD_SIGNATURE", lambda: _raw(client, request))


def _raw(client: RedemptionClient, request: pb.ClaimRequest) -> Any:
    try:
        return client.stub.Claim(request, timeout=10)
    except grpc.RpcError as error:
        raise RedemptionError.from_rpc(error) from None


@pytest.mark.parametrize("minutes", [6, -6])
def test_clock_skew(grpc_env: GrpcEnv, minutes: int) -> None:
    voucher = grpc_env.voucher()
    client = grpc_env.client()
    body = claim_body(grpc_env, voucher, "skew")
    at = format_time(grpc_env.clock() + timedelta(minutes=minutes))
    error = refused(grpc_env, "CLOCK_SKEW", lambda: send(client, "Claim", body, at=at))
    assert error.metadata["tolerance_seconds"] == "300"
    within = format_time(grpc_env.clock() + timedelta(minutes=4))
    assert send(client, "Claim", body, at=within).subsidy_fen == 3_000


def test_message_too_large(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher()
    client = grpc_env.client()
    body = claim_body(grpc_env, voucher, "big", record_id="r" * (MAX_RECEIVE + 10))
    error = refused(grpc_env, "MESSAGE_TOO_LARGE", lambda: send(client, "Claim", body))
    assert error.metadata["limit"] == str(MAX_RECEIVE)
    # In a stream, the stream ends with the same status after the answers before it.
    items = [pb.ClaimStreamRequest(seq=1, claim=pb.ClaimRequest(body=body))]
    with pytest.raises(grpc.RpcError) as caught:
        list(client.stub.ClaimStream(iter(items), timeout=10))
    assert RedemptionError.from_rpc(caught.value).reason == "MESSAGE_TOO_LARGE"


def test_too_many_claims_in_one_stream_request(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher()
    client = grpc_env.client()
    body = claim_body(grpc_env, voucher, "before")
    first = pb.ClaimRequest(body=body, **client.sign("claim", body).fields("ClaimRequest"))
    over = MAX_CLAIMS_PER_MESSAGE + 1
    requests = [
        pb.ClaimStreamRequest(seq=1, claim=first),
        pb.ClaimStreamRequest(claims=[pb.StreamClaim(seq=n) for n in range(2, over + 2)]),
    ]
    answered: list[Any] = []

    def call() -> None:
        try:
            answered.extend(client.stub.ClaimStream(iter(requests), timeout=10))
        except grpc.RpcError as error:
            raise RedemptionError.from_rpc(error) from None

    size = grpc_env.log_size()
    with pytest.raises(RedemptionError) as caught:
        call()
    error = caught.value
    assert (error.reason, error.code) == ("TOO_MANY_CLAIMS", REFUSALS["TOO_MANY_CLAIMS"])
    assert error.metadata == {"count": str(over), "limit": str(MAX_CLAIMS_PER_MESSAGE)}
    # The stream ends with it, after the answers to the requests before it.
    assert [a.seq for a in answered] == [1] and answered[0].HasField("result")
    assert grpc_env.log_size() == size + 1


def test_malformed_message(grpc_env: GrpcEnv) -> None:
    client = grpc_env.client()
    raw = client.channel.unary_unary(
        "/suanli.v1.Redemption/Claim",
        request_serializer=lambda data: data,
        response_deserializer=pb.ClaimResult.FromString,
    )

    def call() -> Any:
        try:
            return raw(b"\xff\xff\xff", timeout=10)
        except grpc.RpcError as error:
            raise RedemptionError.from_rpc(error) from None

    refused(grpc_env, "MALFORMED_MESSAGE", call)


def test_a_certificate_without_a_centre(grpc_env: GrpcEnv) -> None:
    tls = tls_dir(grpc_env.data_dir)
    ca_cert, ca_key = _load_cert(tls / "ca.pem"), _load_key(tls / "ca.key")
    assert ca_cert is not None
    files = centre_files(grpc_env.data_dir, "anonymous")
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    _make_leaf(
        ca_cert,
        ca_key,
        "anonymous",
        [x509.DNSName("anonymous.example")],
        ExtendedKeyUsageOID.CLIENT_AUTH,
        files,
    )
    files.ca.write_bytes((tls / "ca.pem").read_bytes())
    signer = grpc_env.service.centre_keys["nscc-cd"]
    client = RedemptionClient(
        grpc_env.target, files.ca, files.cert, files.key, signer, "nscc-cd", retries=0
    )
    grpc_env.clients.append(client)
    refused(grpc_env, "NO_CENTRE_CERTIFICATE", lambda: client.balance("V-any"))


def test_no_client_certificate_is_turned_away(grpc_env: GrpcEnv) -> None:
    files = centre_files(grpc_env.data_dir, "nscc-cd")
    channel = grpc.secure_channel(
        grpc_env.target, grpc.ssl_channel_credentials(files.ca.read_bytes())
    )
    stub = __import__("suanli.v1.redemption_pb2_grpc", fromlist=["x"]).RedemptionStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetBalance(pb.GetBalanceRequest(voucher="V"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails
    channel.close()


def test_bad_credential_is_refused(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher()
    refused(grpc_env, "BAD_CREDENTIAL", lambda: grpc_env.client().verify_voucher(voucher, "a.b.c"))


# --- the wire format of a refusal, and the docs --------------------------------------------


def test_a_refusal_carries_error_info(grpc_env: GrpcEnv) -> None:
    client = grpc_env.client()
    with pytest.raises(grpc.RpcError) as caught:
        client.stub.GetBalance(pb.GetBalanceRequest(voucher="V-none"), timeout=5)
    status = rpc_status.from_call(caught.value)
    assert status is not None and status.code == grpc.StatusCode.NOT_FOUND.value[0]
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "UNKNOWN_VOUCHER",
        ERROR_DOMAIN,
        {"voucher": "V-none"},
    )


def test_every_reason_is_tested_and_documented() -> None:
    source = Path(__file__).read_text()
    tested = {r for r in REFUSALS if source.count(f'"{r}"') >= 2}
    assert tested == set(REFUSALS), set(REFUSALS) - tested
    documented = dict(re.findall(r"^\| `([A-Z_]+)` \| `([A-Z_]+)` \|", DOCS.read_text(), re.M))
    assert documented == {reason: code.name for reason, code in REFUSALS.items()}


def test_a_stream_refusal_has_the_same_code_and_reason(grpc_env: GrpcEnv) -> None:
    from adapters.client import ClaimItem

    client = grpc_env.client()
    voucher = grpc_env.voucher(valid_until=local("2023-08-21 00:00"))
    grpc_env.clock.set(local("2023-08-22 09:00"))
    size = grpc_env.log_size()
    items = [
        ClaimItem(grpc_env.usage(10_000, f"st-{i}", start=USAGE_START), voucher, 10_000)
        for i in range(3)
    ]
    results = list(client.claim_stream(items))
    assert [(r.refusal.code, r.refusal.reason) for r in results if r.refusal] == [
        (C.FAILED_PRECONDITION, "VOUCHER_EXPIRED")
    ] * 3
    assert grpc_env.log_size() == size
