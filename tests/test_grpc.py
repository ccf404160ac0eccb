"""The gRPC interface end to end: a real TLS server on port 0, real clients, the real rules."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from grpc_fixtures import GrpcEnv, grpc_env, grpc_env_factory, local
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from suanli.v1 import redemption_pb2 as pb

from adapters.client import ClaimItem, RedemptionClient, RedemptionError
from ledger.entry import Entry
from ledger.fold import opened
from ledger.keys import Signer
from ledger.publication import conceal_as_signed

__all__ = ["grpc_env", "grpc_env_factory"]  # fixtures used here

DOCS = Path(__file__).resolve().parent.parent / "docs" / "grpc.md"


# --- the signing form: a vector a client in another language can reproduce -----------------

VECTOR_SEED = bytes(range(32))
VECTOR_KEY = "PRIVATE+KEY+nscc-cd+67669085+AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"
VECTOR_VKEY = "nscc-cd+67669085+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
VECTOR_AT = "2023-07-01T01:05:00.000000Z"
VECTOR_BODY = {
    "centre": "nscc-cd",
    "record_id": "4242.0",
    "voucher": "V-2023-0001",
    "resource": "gpu:a100",
    "quantity": 14400,
    "start": "2023-07-01T00:00:00.000000Z",
    "end": "2023-07-01T01:00:00.000000Z",
    "cost_fen": 3200,
}
VECTOR_SALTS = {
    "record_id": "AQEBAQEBAQEBAQEBAQEBAQ",
    "resource": "AgICAgICAgICAgICAgICAg",
    "quantity": "AwMDAwMDAwMDAwMDAwMDAw",
    "start": "BAQEBAQEBAQEBAQEBAQEBA",
    "end": "BQUFBQUFBQUFBQUFBQUFBQ",
}
VECTOR_DISCLOSURES = [
    "WyJBUUVCQVFFQkFRRUJBUUVCQVFFQkFRIiwicmVjb3JkX2lkIiwiNDI0Mi4wIl0",
    "WyJBZ0lDQWdJQ0FnSUNBZ0lDQWdJQ0FnIiwicmVzb3VyY2UiLCJncHU6YTEwMCJd",
    "WyJBd01EQXdNREF3TURBd01EQXdNREF3IiwicXVhbnRpdHkiLDE0NDAwXQ",
    "WyJCQVFFQkFRRUJBUUVCQVFFQkFRRUJBIiwic3RhcnQiLCIyMDIzLTA3LTAxVDAwOjAwOjAwLjAwMDAwMFoiXQ",
    "WyJCUVVGQlFVRkJRVUZCUVVGQlFVRkJRIiwiZW5kIiwiMjAyMy0wNy0wMVQwMTowMDowMC4wMDAwMDBaIl0",
]
VECTOR_MESSAGE = (
    b"suanli-entry/v1\n"
    b'{"at":"2023-07-01T01:05:00.000000Z","body":{"_sd":["PkzRjEFFffazdT9enE_Z3zrXFuZb'
    b's31wdcfklBSJDqI","W5BieGvVhwSGlLkslUx7yC-4aA8JSTE87VPfTiivoe0","_xus6JVrdBPvhxd3'
    b'tD-GP6K-DyqXZy-9wxuU0-guicY","sF6jAlKlhwoakGCh9EpaNcSgcBAwVXj4N5zGAARpeFI","y2iv'
    b'wLZfvl8c0jM3C0ankWyMxZor-jk6LcMkbrsQE7g"],"centre":"nscc-cd","cost_fen":3200,"vo'
    b'ucher":"V-2023-0001"},"kind":"claim","v":1}'
)
VECTOR_SIGNATURE_HEX = (
    "a0a9587a106ede047cb92b9c7bfcccd317dc4d2c0ed6655cdd952600821963b8"
    "5f6810b435f614bc72c74732a86eab62ad846466fb17c808d908d7cb89555e05"
)


def test_signing_vector() -> None:
    signer = Signer("nscc-cd", VECTOR_SEED)
    assert signer.skey == VECTOR_KEY
    assert signer.verifier.vkey == VECTOR_VKEY
    assert Signer.parse(VECTOR_KEY).seed == VECTOR_SEED
    published, disclosures = conceal_as_signed("claim", VECTOR_BODY, VECTOR_SALTS)
    assert list(disclosures) == VECTOR_DISCLOSURES
    message = Entry("claim", VECTOR_AT, published).message()
    assert message == VECTOR_MESSAGE
    signature = signer.sign(message)
    assert signature.hex() == VECTOR_SIGNATURE_HEX  # Ed25519 is deterministic (RFC 8032)
    signer.verifier.verify(VECTOR_MESSAGE, bytes.fromhex(VECTOR_SIGNATURE_HEX))
    # The client conceals and signs exactly this for the same body, time and salts.
    from adapters.client import body_dict

    assert body_dict(pb.ClaimBody(**VECTOR_BODY)) == VECTOR_BODY


def test_the_vector_is_in_the_docs() -> None:
    text = DOCS.read_text()
    prefix, _, json_line = VECTOR_MESSAGE.decode().partition("\n")
    for needle in (VECTOR_KEY, VECTOR_VKEY, prefix, json_line, VECTOR_AT):
        assert needle in text, needle
    hex_lines = re.findall(r"^\s*([0-9a-f]{8,64})$", text, re.M)
    assert VECTOR_MESSAGE.hex() in "".join(hex_lines)
    assert VECTOR_SIGNATURE_HEX in "".join(hex_lines)


# --- claims ------------------------------------------------------------------------------


def test_claim_then_retry_gets_the_first_answer(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher()
    client = grpc_env.client()
    usage = grpc_env.usage(120_000, "job-1.0")
    first = client.claim(usage, voucher, 120_000)
    assert (first.subsidy_fen, first.rate_bp, first.bound_by) == (36_000, 3000, "rate")
    assert first.voucher_balance_fen == 300 * 1_000_000 - 36_000
    assert not first.replayed
    size = grpc_env.log_size()
    assert first.log_index == size - 1
    grpc_env.clock.advance(seconds=30)
    again = client.claim(usage, voucher, 120_000)  # re-signed with a later `at`
    assert again.replayed
    again.replayed = False
    assert again == first
    assert grpc_env.log_size() == size  # a retry writes nothing
    # The entry in the log is what the centre signed: the job concealed, its disclosures
    # beside it (docs/publication.md), the signature over the published body.
    (entry,) = grpc_env.ledger.store.read(first.log_index, size)
    assert entry.kind == "claim" and "record_id" not in entry.body
    assert set(entry.body) == {"centre", "voucher", "cost_fen", "_sd"}
    assert opened(entry).body["record_id"] == "job-1.0"
    key = grpc_env.service.centre_keys["nscc-cd"]
    assert [s.key for s in entry.sigs] == [key.key_id]
    key.verifier.verify(entry.message(), entry.sigs[0].sig)


def test_same_record_different_body_is_already_exists(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher()
    client = grpc_env.client()
    usage = grpc_env.usage(120_000, "job-2")
    first = client.claim(usage, voucher, 120_000)
    size = grpc_env.log_size()
    other = grpc_env.usage(150_000, "job-2")
    with pytest.raises(RedemptionError) as caught:
        client.claim(other, voucher, 150_000)
    error = caught.value
    assert error.code == grpc.StatusCode.ALREADY_EXISTS
    assert error.reason == "ALREADY_CLAIMED"
    assert error.metadata["log_index"] == str(first.log_index)
    assert error.metadata["diff.cost_fen"] == "120000 -> 150000"
    assert "quantity" in error.message
    assert grpc_env.log_size() == size


def test_hold_capture_and_balance(grpc_env: GrpcEnv) -> None:
    # (六) AI 大模型 vouchers run for years, so a hold (usage about to start) fits its window.
    voucher = grpc_env.voucher("ai-model")
    client = grpc_env.client()
    before = client.balance(voucher)
    expires = grpc_env.clock() + timedelta(hours=2)
    hold = client.authorize("hold-1", voucher, 1_000_000, expires)
    assert (hold.held_fen, hold.status, hold.voucher, hold.rate_bp) == (
        500_000,
        "open",
        voucher,
        5000,
    )
    balance = client.balance(voucher)
    assert balance.held_fen == 500_000
    assert balance.available_fen == before.available_fen - 500_000
    assert [c.remaining_fen for c in balance.caps] == sorted(c.remaining_fen for c in balance.caps)
    # A retried Authorize answers the same hold.
    again = client.authorize("hold-1", voucher, 1_000_000, expires)
    assert again.replayed and again.log_index == hold.log_index
    assert (again.held_fen, again.rate_bp, again.expires_at) == (
        hold.held_fen,
        hold.rate_bp,
        hold.expires_at,
    )
    usage = grpc_env.usage(600_000, "job-3")
    captured = client.capture("hold-1", usage, 600_000)
    assert (captured.subsidy_fen, captured.hold_id, captured.released_fen) == (
        300_000,
        "hold-1",
        200_000,
    )
    balance = client.balance(voucher)
    assert balance.held_fen == 0
    assert balance.balance_fen == before.balance_fen - 300_000
    # Capture retried: the first answer.
    assert client.capture("hold-1", usage, 600_000).replayed


def test_void_releases_and_a_retried_void_answers_the_same(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher("ai-model")
    client = grpc_env.client()
    client.authorize("hold-v", voucher, 100_000, grpc_env.clock() + timedelta(hours=1))
    voided = client.void("hold-v")
    assert voided.released_fen == 50_000
    size = grpc_env.log_size()
    assert client.void("hold-v") == voided
    assert grpc_env.log_size() == size
    assert client.balance(voucher).held_fen == 0


def test_a_centre_cannot_touch_another_centres_hold(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher("ai-model")
    nscc, icc = grpc_env.client("nscc-cd"), grpc_env.client("cd-icc")
    nscc.authorize("shared-id", voucher, 100_000, grpc_env.clock() + timedelta(hours=1))
    size = grpc_env.log_size()
    usage = grpc_env.usage(100_000, "icc-job", centre="cd-icc")
    for attempt in (
        lambda: icc.capture("shared-id", usage, 100_000),
        lambda: icc.void("shared-id"),
    ):
        with pytest.raises(RedemptionError) as caught:
            attempt()
        assert (caught.value.code, caught.value.reason) == (
            grpc.StatusCode.NOT_FOUND,
            "UNKNOWN_HOLD",
        )
    assert grpc_env.log_size() == size
    # ... nor see another centre's claims.
    nscc.claim(grpc_env.usage(100_000, "mine"), grpc_env.voucher(), 100_000)
    assert [r.body.record_id for r in nscc.list_claims()] == ["mine"]
    assert icc.list_claims() == []


def test_list_claims_filters_and_resumes(grpc_env: GrpcEnv) -> None:
    v1, v2 = grpc_env.voucher(), grpc_env.voucher()
    client = grpc_env.client()
    results = [
        client.claim(grpc_env.usage(10_000 * (i + 1), f"r{i}"), v, 10_000 * (i + 1))
        for i, v in enumerate([v1, v2, v1])
    ]
    listed = client.list_claims()
    assert [r.result.log_index for r in listed] == [r.log_index for r in results]
    assert listed[0].result == results[0] and listed[0].kind == "claim"
    assert [r.body.record_id for r in client.list_claims(voucher=v1)] == ["r0", "r2"]
    resumed = client.list_claims(from_index=results[1].log_index, limit=1)
    assert [r.body.record_id for r in resumed] == ["r1"]


def test_claim_stream_back_fill(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher()
    client = grpc_env.client(timeout=30)
    items = [ClaimItem(grpc_env.usage(10_000, f"bf-{i}"), voucher, 10_000) for i in range(300)]
    items[150] = ClaimItem(items[150].usage, "V-NO-SUCH", 10_000)  # one refusal mid-stream
    items.append(items[10])  # a repeat: the first answer again
    results = list(client.claim_stream(items, window=64))
    assert [r.item for r in results] == items
    refused = [r for r in results if not r.ok]
    assert len(refused) == 1
    assert refused[0].refusal is not None and refused[0].refusal.reason == "UNKNOWN_VOUCHER"
    assert refused[0].refusal.code == grpc.StatusCode.NOT_FOUND
    assert results[-1].result is not None and results[-1].result.replayed
    assert results[-1].result.log_index == results[10].result.log_index  # type: ignore[union-attr]
    assert sum(r.result.subsidy_fen for r in results[:-1] if r.result) == 299 * 3_000
    assert len(client.list_claims()) == 299


def test_statements_are_empty_until_settlement_exists(grpc_env: GrpcEnv) -> None:
    client = grpc_env.client()
    assert client.statements() == []
    with pytest.raises(RedemptionError) as caught:
        client.statement("2023-Q3")
    assert (caught.value.code, caught.value.reason) == (
        grpc.StatusCode.NOT_FOUND,
        "UNKNOWN_STATEMENT",
    )


def test_verify_voucher_and_its_credential(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher(centres=["nscc-cd"])
    credential = grpc_env.ledger.refresh().parts["vouchers"].vouchers[voucher].credential
    nscc, icc = grpc_env.client("nscc-cd"), grpc_env.client("cd-icc")
    answer = nscc.verify_voucher(voucher, credential)
    assert answer.usable and answer.credential_checked and answer.status == "active"
    assert list(answer.accepted_centres) == ["nscc-cd"]
    elsewhere = icc.verify_voucher(voucher)
    assert not elsewhere.usable and elsewhere.reason == "CENTRE_NOT_ACCEPTED"
    with pytest.raises(RedemptionError) as caught:
        nscc.verify_voucher(voucher, credential[:-4] + "AAAA")
    assert caught.value.reason == "BAD_CREDENTIAL"


# --- standard services -------------------------------------------------------------------


def test_health_and_reflection(grpc_env: GrpcEnv) -> None:
    channel = grpc_env.client().channel
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "suanli.v1.Redemption"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="suanli.v1.Redemption"),
    ]
    listed, described = list(stub.ServerReflectionInfo(iter(requests), timeout=5))
    names = {s.name for s in listed.list_services_response.service}
    assert {"suanli.v1.Redemption", "grpc.health.v1.Health"} <= names
    assert described.file_descriptor_response.file_descriptor_proto


# --- deadlines, shutdown, retries --------------------------------------------------------


def _block_sequencer(env: GrpcEnv) -> threading.Event:
    """Occupy the sequencer until the returned event is set."""
    release, started = threading.Event(), threading.Event()

    def hold(_tx: object) -> None:
        started.set()
        release.wait(10)

    env.service.sequencer.submit(hold)
    assert started.wait(5)
    return release


def test_a_call_past_its_deadline_is_never_applied(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher()
    client = grpc_env.client(timeout=0.3, retries=0)
    usage = grpc_env.usage(50_000, "late-1")
    size = grpc_env.log_size()
    release = _block_sequencer(grpc_env)
    try:
        with pytest.raises(RedemptionError) as caught:
            client.claim(usage, voucher, 50_000)
        assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        release.set()
    grpc_env.service.sequencer.call(lambda tx: None, timeout=5)  # the queue has drained
    assert grpc_env.log_size() == size
    fresh = grpc_env.client().claim(usage, voucher, 50_000)
    assert not fresh.replayed  # the late call had not been applied


def test_an_expired_deadline_is_refused_on_arrival(grpc_env: GrpcEnv) -> None:
    client = grpc_env.client(timeout=1e-6, retries=0)
    with pytest.raises(RedemptionError) as caught:
        client.balance("V-any")
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_client_retries_transient_failures_and_re_signs(grpc_env: GrpcEnv) -> None:
    client = grpc_env.client(retries=3, backoff=0.001)
    seen: list[str] = []

    class Flaky(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.UNAVAILABLE

        def details(self) -> str:
            return "flaky"

    real = client.stub.Claim

    def flaky_claim(request: pb.ClaimRequest, timeout: float) -> pb.ClaimResult:
        seen.append(request.at)
        if len(seen) < 3:
            grpc_env.clock.advance(seconds=1)
            raise Flaky()
        return real(request, timeout=timeout)

    client.stub.Claim = flaky_claim  # type: ignore[method-assign]
    voucher = grpc_env.voucher()
    result = client.claim(grpc_env.usage(10_000, "flaky-1"), voucher, 10_000)
    assert result.subsidy_fen == 3_000
    assert len(seen) == 3 and len(set(seen)) == 3  # each attempt signed anew

    def always_failing(request: pb.ClaimRequest, timeout: float) -> pb.ClaimResult:
        raise Flaky()

    client.stub.Claim = always_failing  # type: ignore[method-assign]
    with pytest.raises(RedemptionError) as caught:
        client.claim(grpc_env.usage(10_000, "flaky-2"), voucher, 10_000)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE


def test_graceful_shutdown_drains_calls_in_flight(grpc_env_factory) -> None:
    env = grpc_env_factory(name="drain")
    voucher = env.voucher()
    client = env.client(timeout=20, retries=0)
    usage = env.usage(70_000, "drain-1")
    release = _block_sequencer(env)
    outcome: dict[str, object] = {}

    def claim() -> None:
        try:
            outcome["result"] = client.claim(usage, voucher, 70_000)
        except RedemptionError as exc:  # pragma: no cover - reported below
            outcome["error"] = exc

    caller = threading.Thread(target=claim)
    caller.start()
    time.sleep(0.3)  # the claim is waiting in the sequencer
    stopper = threading.Thread(target=env.server.stop, args=(10.0,))
    stopper.start()
    time.sleep(0.3)
    assert stopper.is_alive()  # stop() waits for the call in flight
    release.set()
    caller.join(10)
    stopper.join(10)
    assert "error" not in outcome, outcome
    result = outcome["result"]
    assert isinstance(result, pb.ClaimResult) and result.subsidy_fen == 21_000
    with pytest.raises(RedemptionError) as caught:  # no new calls after shutdown
        RedemptionClient.from_data_dir(
            env.target, env.data_dir, "nscc-cd", timeout=1, retries=0
        ).balance(voucher)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    env.server = _Stopped()  # type: ignore[assignment]


class _Stopped:
    def stop(self, grace: float) -> None:
        pass


def test_the_client_sends_canonical_times(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher()
    client = grpc_env.client()
    usage = grpc_env.usage(10_000, "times-1", start=local("2023-05-01 08:30"))
    result = client.claim(usage, voucher, 10_000)
    entry = opened(grpc_env.ledger.store.read(result.log_index, result.log_index + 1)[0])
    pattern = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
    assert all(pattern.match(entry.body[k]) for k in ("start", "end"))
    assert pattern.match(entry.at)
    assert entry.body["start"] == "2023-05-01T00:30:00.000000Z"
