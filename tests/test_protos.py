"""The .proto contract: generated code never drifts, and the signed bodies are the agreed ones."""

from __future__ import annotations

import pytest
from suanli.v1 import redemption_pb2 as pb
from suanli.v1 import redemption_pb2_grpc as pb_grpc

from api import protos


def test_generated_code_matches_the_proto() -> None:
    assert protos.check() == []


def test_check_reports_drift(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A copy of the package with one generated file edited must fail the check.
    copy = tmp_path / "protos" / "suanli" / "v1"
    copy.mkdir(parents=True)
    for path in protos.PACKAGE_DIR.iterdir():
        if path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    stub = copy / "redemption_pb2.pyi"
    stub.write_text(stub.read_text() + "\n# edited by hand\n")
    (copy / "stale_pb2.py").write_text("")
    monkeypatch.setattr(protos, "PROTO_ROOT", tmp_path / "protos")
    monkeypatch.setattr(protos, "PACKAGE_DIR", copy)
    problems = protos.check()
    assert any(p.startswith("redemption_pb2.pyi: differs") for p in problems)
    assert any(p.startswith("stale_pb2.py: stale") for p in problems)
    assert protos.main(["--check"]) == 1


def test_service_has_every_rpc() -> None:
    service = pb.DESCRIPTOR.services_by_name["Redemption"]
    assert service.full_name == "suanli.v1.Redemption"
    methods = {m.name: (m.client_streaming, m.server_streaming) for m in service.methods}
    assert methods == {
        "VerifyVoucher": (False, False),
        "GetBalance": (False, False),
        "Authorize": (False, False),
        "Capture": (False, False),
        "Void": (False, False),
        "Claim": (False, False),
        "ClaimStream": (True, True),
        "ListClaims": (False, True),
        "GetStatement": (False, False),
        "ListStatements": (False, False),
    }
    assert hasattr(pb_grpc, "RedemptionStub")


@pytest.mark.parametrize(
    ("message", "fields"),
    [
        (
            pb.ClaimBody,
            ["centre", "record_id", "voucher", "resource", "quantity", "start", "end", "cost_fen"],
        ),
        (pb.HoldBody, ["centre", "hold_id", "voucher", "estimated_cost_fen", "expires_at"]),
        (
            pb.CaptureBody,
            ["centre", "hold_id", "record_id", "resource", "quantity", "start", "end", "cost_fen"],
        ),
        (pb.VoidBody, ["centre", "hold_id"]),
    ],
)
def test_signed_bodies_are_the_entry_formats(message, fields) -> None:
    # The body message's fields ARE the ledger entry's body members: nothing more, nothing less.
    assert [f.name for f in message.DESCRIPTOR.fields] == fields


@pytest.mark.parametrize(
    "request_type",
    [pb.ClaimRequest, pb.AuthorizeRequest, pb.CaptureRequest, pb.VoidRequest],
)
def test_every_write_carries_body_at_key_and_signature(request_type) -> None:
    fields = {f.name: f.type for f in request_type.DESCRIPTOR.fields}
    f = request_type.DESCRIPTOR.fields_by_name
    # claims and captures carry the salts of the members they conceal (docs/publication.md)
    conceals = request_type in (pb.ClaimRequest, pb.CaptureRequest)
    assert set(fields) == {"body", "at", "key_id", "signature"} | ({"salts"} if conceals else set())
    assert f["signature"].type == f["signature"].TYPE_BYTES
    assert f["at"].type == f["key_id"].type == f["at"].TYPE_STRING
