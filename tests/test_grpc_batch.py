"""ClaimStream requests that carry several claims (docs/grpc.md, "Several claims per
message"): one response per request, each claim answered alone with its own seq."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import pytest
from grpc_fixtures import GrpcEnv, grpc_env, grpc_env_factory
from suanli.v1 import redemption_pb2 as pb

from adapters.client import (
    ClaimItem,
    RedemptionClient,
    RedemptionError,
    _StreamState,
    claim_body,
    sign_entry,
)
from ledger.errors import InvalidInput
from ledger.limits import MAX_CLAIMS_PER_MESSAGE
from ledger.timeutil import format_time

__all__ = ["grpc_env", "grpc_env_factory"]  # fixtures used here


def signed_claim(
    env: GrpcEnv, client: RedemptionClient, voucher: str, record: str, cost: int, **change: Any
) -> pb.ClaimRequest:
    """A claim request signed by ``client``'s centre key; ``tamper`` flips a signature bit."""
    tamper = change.pop("tamper", False)
    usage = env.usage(cost, record)
    body = claim_body(usage, voucher, cost)
    for name, value in change.items():
        setattr(body, name, value)
    at = format_time(client.clock())
    try:
        fields = sign_entry("claim", body, client.signer, at).fields("ClaimRequest")
    except InvalidInput:  # no canonical form (an integer past 2^53): the edge refuses it
        fields = {"at": at, "key_id": client.signer.key_id, "signature": bytes(64)}
    if tamper:
        fields["signature"] = bytes([fields["signature"][0] ^ 1]) + fields["signature"][1:]
    return pb.ClaimRequest(body=body, **fields)


def batch(*claims: tuple[int, pb.ClaimRequest]) -> pb.ClaimStreamRequest:
    return pb.ClaimStreamRequest(claims=[pb.StreamClaim(seq=s, claim=c) for s, c in claims])


def stream(client: RedemptionClient, *requests: pb.ClaimStreamRequest) -> list[Any]:
    return list(client.stub.ClaimStream(iter(requests), timeout=30))


def outcome(answer: Any) -> tuple[int, str]:
    """(seq, "ok" or the refusal's reason)."""
    return answer.seq, "ok" if answer.HasField("result") else answer.refusal.reason


def test_one_bad_claim_fails_alone_in_a_batch(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher()
    small = grpc_env.voucher(face_value_fen=100_000)  # the round's minimum, 1,000 元
    client = grpc_env.client()
    size = grpc_env.log_size()

    def claims() -> pb.ClaimStreamRequest:  # signed afresh each time, as a retry would be
        return batch(
            (11, signed_claim(grpc_env, client, voucher, "b-good-1", 10_000)),
            (12, signed_claim(grpc_env, client, voucher, "b-bad-sig", 10_000, tamper=True)),
            (13, signed_claim(grpc_env, client, voucher, "b-range", 10_000, quantity=2**60)),
            (14, signed_claim(grpc_env, client, small, "b-exhaust", 1_000_000)),
            (15, signed_claim(grpc_env, client, small, "b-over-cap", 100_000)),
            (16, signed_claim(grpc_env, client, voucher, "b-good-2", 20_000)),
        )

    [response] = stream(client, claims())
    assert not response.HasField("result") and not response.HasField("refusal")
    assert [outcome(a) for a in response.answers] == [
        (11, "ok"),
        (12, "BAD_SIGNATURE"),
        (13, "OUT_OF_RANGE"),
        (14, "ok"),
        (15, "CAP_EXHAUSTED"),
        (16, "ok"),
    ]
    answers = {a.seq: a for a in response.answers}
    assert answers[13].refusal.metadata["field"] == "body.quantity"
    assert answers[15].refusal.metadata["cap"] == "voucher"
    assert answers[15].refusal.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert [answers[s].result.subsidy_fen for s in (11, 14, 16)] == [3_000, 100_000, 6_000]
    assert grpc_env.log_size() == size + 3
    listed = [r.body.record_id for r in client.list_claims()]
    assert listed == ["b-good-1", "b-exhaust", "b-good-2"]

    # The same batch again: each claim answered as before, the good ones as replayed.
    [again] = stream(client, claims())
    assert [outcome(a) for a in again.answers] == [outcome(a) for a in response.answers]
    for seq in (11, 14, 16):
        replayed = next(a.result for a in again.answers if a.seq == seq)
        assert replayed.replayed and replayed.log_index == answers[seq].result.log_index
    assert grpc_env.log_size() == size + 3


def test_single_and_batched_requests_are_answered_in_order(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher()
    client = grpc_env.client()
    responses = stream(
        client,
        pb.ClaimStreamRequest(seq=1, claim=signed_claim(grpc_env, client, voucher, "m-1", 10_000)),
        batch(
            (2, signed_claim(grpc_env, client, voucher, "m-2", 10_000)),
            (3, signed_claim(grpc_env, client, "V-NO-SUCH", "m-3", 10_000)),
        ),
        pb.ClaimStreamRequest(
            seq=4, claim=signed_claim(grpc_env, client, voucher, "m-4", 10_000, tamper=True)
        ),
        batch((5, signed_claim(grpc_env, client, voucher, "m-5", 10_000))),
    )
    assert len(responses) == 4
    assert outcome(responses[0]) == (1, "ok") and not responses[0].answers
    assert [outcome(a) for a in responses[1].answers] == [(2, "ok"), (3, "UNKNOWN_VOUCHER")]
    assert outcome(responses[2]) == (4, "BAD_SIGNATURE")
    assert [outcome(a) for a in responses[3].answers] == [(5, "ok")]
    indices = [responses[0].result.log_index, responses[1].answers[0].result.log_index]
    indices.append(responses[3].answers[0].result.log_index)
    assert indices == sorted(indices) and len(set(indices)) == 3  # decided in the order sent


def test_a_request_with_both_forms_ends_the_stream(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher()
    client = grpc_env.client()
    both = batch((2, signed_claim(grpc_env, client, voucher, "x-2", 10_000)))
    both.seq = 1
    both.claim.CopyFrom(signed_claim(grpc_env, client, voucher, "x-1", 10_000))
    size = grpc_env.log_size()
    with pytest.raises(grpc.RpcError) as caught:
        stream(client, both)
    error = RedemptionError.from_rpc(caught.value)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_MESSAGE")
    assert grpc_env.log_size() == size


def test_the_client_batches_and_gets_each_answer(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher()
    client = grpc_env.client(timeout=30)
    items = [ClaimItem(grpc_env.usage(10_000, f"cb-{i}"), voucher, 10_000) for i in range(200)]
    items[70] = ClaimItem(items[70].usage, "V-NO-SUCH", 10_000)  # one refusal mid-batch
    items.append(items[10])  # a repeat: the first answer again
    results = list(client.claim_stream(items, window=64, per_message=16))
    assert [r.item for r in results] == items
    refused = [r for r in results if not r.ok]
    assert [r.refusal.reason for r in refused if r.refusal] == ["UNKNOWN_VOUCHER"]
    assert results[-1].result is not None and results[-1].result.replayed
    assert results[-1].result.log_index == results[10].result.log_index  # type: ignore[union-attr]
    assert len(client.list_claims()) == 199


def test_the_client_fills_each_message_up_to_its_size(grpc_env: GrpcEnv) -> None:
    voucher = grpc_env.voucher()
    client = grpc_env.client()
    items = [ClaimItem(grpc_env.usage(10_000, f"fill-{i}"), voucher, 10_000) for i in range(40)]
    state = _StreamState(window=64)
    requests = list(client._stream_requests(iter(items), state, threading.Event(), 16))
    assert [len(r.claims) for r in requests] == [16, 16, 8]
    assert [c.seq for r in requests for c in r.claims] == list(range(1, 41))
    assert all(not r.seq and not r.HasField("claim") for r in requests)
    # A full window sends what it has rather than wait for room.
    state = _StreamState(window=10)
    first = next(client._stream_requests(iter(items), state, threading.Event(), 16))
    assert len(first.claims) == 10
    with pytest.raises(ValueError, match="per_message"):
        next(client.claim_stream(items, per_message=MAX_CLAIMS_PER_MESSAGE + 1))


def test_a_broken_batched_stream_resends_each_unanswered_claim_once(grpc_env: GrpcEnv) -> None:
    """The stream breaks (UNAVAILABLE) after two responses, while the ledger holds more
    claims of it: the client re-sends every unanswered claim, batched, and each item gets
    one answer; the ledger records each claim once (those it had, as replayed)."""
    voucher = grpc_env.voucher()
    client = grpc_env.client(timeout=30, backoff=0.001)
    real = client.stub.ClaimStream
    calls: list[int] = []

    class Flaky(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.UNAVAILABLE

        def details(self) -> str:
            return "flaky"

    class Breaking:
        def __init__(self, call: Any) -> None:
            self.call = call

        def __iter__(self) -> Any:
            for n, response in enumerate(self.call):
                if n == 2:
                    time.sleep(0.5)  # the ledger commits what it was sent meanwhile
                    raise Flaky()
                yield response

        def cancel(self) -> None:
            self.call.cancel()

    def claim_stream(requests: Any, timeout: float) -> Any:
        calls.append(1)
        call = real(requests, timeout=timeout)
        return Breaking(call) if len(calls) == 1 else call

    client.stub.ClaimStream = claim_stream  # type: ignore[method-assign]
    items = [ClaimItem(grpc_env.usage(10_000, f"brk-{i}"), voucher, 10_000) for i in range(200)]
    size = grpc_env.log_size()
    results = list(client.claim_stream(items, window=64, per_message=16))
    assert len(calls) == 2
    assert sorted(r.item.usage.record_id for r in results) == sorted(
        i.usage.record_id for i in items
    )
    assert all(r.ok for r in results)
    assert grpc_env.log_size() == size + 200
    indices = [r.result.log_index for r in results if r.result]
    assert len(set(indices)) == 200  # no claim recorded twice
