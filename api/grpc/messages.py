"""The gRPC messages of ``suanli.v1.Redemption``, to and from what the use cases take and give.

* **In.** Request bytes are parsed here (not by gRPC), so that a message over
  ``MAX_RECEIVE`` bytes is refused with RESOURCE_EXHAUSTED ``MESSAGE_TOO_LARGE``, and bytes
  that are no protobuf message with ``MALFORMED_MESSAGE``. A signed write becomes the
  ``Entry`` the centre signed (``signed_entry``): the body's fields as named, every integer
  JSON-safe, the body's centre the certificate's (``CERTIFICATE_MISMATCH``).
* **Out.** Results, views and refusals become messages; a refusal's status carries a
  ``google.rpc.ErrorInfo`` (domain ``suanli.ledger``, the reason, the details).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from suanli.v1 import redemption_pb2 as pb

from api.errors import ERROR_DOMAIN, MessageTooLarge, grpc_code
from ledger import limits, settlement
from ledger.entry import Entry, Signature
from ledger.errors import Denied, InvalidInput, LedgerError
from ledger.publication import conceal_as_signed
from ledger.timeutil import format_time
from ledger.usecases.commands.redemption import Redeemed
from ledger.usecases.views.centres import released_on_capture

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Redemption"].full_name  # "suanli.v1.Redemption"
MAX_RECEIVE = 1 << 20  # 1 MiB: larger requests are refused with MESSAGE_TOO_LARGE
SIGNATURE_BYTES = 64  # Ed25519


# --- in ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unreadable:
    """A request this module could not accept as a message: too large or not protobuf."""

    error: LedgerError


def reader(cls: type[Message], limit: int = MAX_RECEIVE) -> Callable[[bytes], Any]:
    """The request deserialiser of ``cls``: the message, or ``Unreadable``."""
    name = cls.DESCRIPTOR.full_name

    def read(data: bytes) -> Message | Unreadable:
        if len(data) > limit:
            return Unreadable(
                MessageTooLarge(
                    f"{name} is {len(data)} bytes; at most {limit} bytes are accepted",
                    details={"size": len(data), "limit": limit},
                )
            )
        try:
            message = cls.FromString(data)
        except DecodeError as exc:
            return Unreadable(
                InvalidInput(f"not a valid {name} message: {exc}", reason="MALFORMED_MESSAGE")
            )
        try:
            check_scalars(message)
        except InvalidInput as refusal:
            return Unreadable(refusal)
        return message

    return read


def stream_reader(limit: int = MAX_RECEIVE) -> Callable[[bytes], Any]:
    """The request deserialiser of ClaimStream: as ``reader``, and a request that carries
    several claims carries nothing else, at most ``MAX_CLAIMS_PER_MESSAGE`` of them
    (``TOO_MANY_CLAIMS``), each with its seq within bounds."""
    read = reader(pb.ClaimStreamRequest, limit)

    def read_stream(data: bytes) -> pb.ClaimStreamRequest | Unreadable:
        message: pb.ClaimStreamRequest | Unreadable = read(data)
        if isinstance(message, Unreadable) or not message.claims:
            return message
        try:
            check_claims(message)
        except LedgerError as refusal:
            return Unreadable(refusal)
        return message

    return read_stream


def check_claims(request: pb.ClaimStreamRequest) -> None:
    """A ClaimStreamRequest with ``claims`` has no ``seq`` or ``claim`` of its own (which
    would leave one of them unanswered), not too many claims, and JSON-safe seqs."""
    if request.seq or request.HasField("claim"):
        raise InvalidInput(
            "a ClaimStreamRequest carries either seq and claim, or claims; not both",
            reason="MALFORMED_MESSAGE",
        )
    count, most = len(request.claims), limits.MAX_CLAIMS_PER_MESSAGE
    if count > most:
        raise MessageTooLarge(
            f"a ClaimStreamRequest carries {count} claims; at most {most} are accepted",
            reason="TOO_MANY_CLAIMS",
            details={"count": count, "limit": most},
        )
    for claim in request.claims:
        limits.check_int("claims.seq", claim.seq)


def check_scalars(message: Message) -> None:
    """Refuse a request whose own integer fields (pages, indices, sequence numbers) lie
    outside their bounds (``ledger.limits``); a signed body's are checked per write, by
    ``body_json``, so that one bad claim in a stream is refused alone."""
    for field in message.DESCRIPTOR.fields:
        if field.is_repeated or field.type in (field.TYPE_MESSAGE, field.TYPE_BYTES):
            continue
        value = getattr(message, field.name)
        if isinstance(value, int) and not isinstance(value, bool):
            limits.check_int(field.name, value)


_BODY_FIELDS: dict[str, tuple[str, ...]] = {
    kind: tuple(f.name for f in cls.DESCRIPTOR.fields)
    for kind, cls in (
        ("claim", pb.ClaimBody),
        ("hold", pb.HoldBody),
        ("capture", pb.CaptureBody),
        ("void", pb.VoidBody),
    )
}
_TIME_FIELDS = frozenset({"start", "end", "expires_at"})


def body_json(kind: str, body: Message) -> dict[str, Any]:
    """The JSON body of a ``kind`` entry from its protobuf message: every field, as named,
    each integer within its bound and each time in the ledger's form and years
    (``ledger.limits``; OUT_OF_RANGE or MALFORMED_TIME naming ``body.<field>``)."""
    out: dict[str, Any] = {}
    for name in _BODY_FIELDS[kind]:
        value = getattr(body, name)
        if isinstance(value, int):
            limits.check_int(f"body.{name}", value)
        elif name in _TIME_FIELDS:
            limits.check_time(f"body.{name}", value)
        out[name] = value
    return out


def signed_entry(kind: str, request: Any, centre: str) -> Entry:
    """The entry a centre signed, from a ClaimRequest, AuthorizeRequest, CaptureRequest or
    VoidRequest that came over the certificate of ``centre``."""
    limits.check_time("at", request.at)
    body = body_json(kind, request.body)
    if not body["centre"]:
        raise InvalidInput(f"{kind}: body.centre is required", reason="MISSING_FIELD")
    if body["centre"] != centre:
        raise Denied(
            f"the client certificate is for centre {centre!r} but the {kind} is for "
            f"{body['centre']!r}",
            reason="CERTIFICATE_MISMATCH",
            details={"certificate_centre": centre, "body_centre": body["centre"]},
        )
    if len(request.signature) != SIGNATURE_BYTES:
        raise Denied(
            f"the signature is {len(request.signature)} bytes; an Ed25519 signature is "
            f"{SIGNATURE_BYTES} (see docs/grpc.md for the signed bytes)",
            reason="BAD_SIGNATURE",
            details={"key_id": request.key_id},
        )
    published, disclosures = conceal_as_signed(kind, body, dict(getattr(request, "salts", {})))
    signature = Signature(request.key_id, request.signature)
    return Entry(kind, request.at, published, (signature,)).disclosed(disclosures, clear=body)


# --- out -----------------------------------------------------------------------------------

_SCALARS: dict[str, dict[str, type]] = {}


def _scalars(message: Message) -> dict[str, type]:
    """The settable scalar fields of a message type, by name, with the Python type they take."""
    name = message.DESCRIPTOR.full_name
    found = _SCALARS.get(name)
    if found is None:
        found = {}
        for field in message.DESCRIPTOR.fields:
            if field.is_repeated or field.type == field.TYPE_MESSAGE:
                continue
            if field.type == field.TYPE_STRING:
                found[field.name] = str
            elif field.type == field.TYPE_BOOL:
                found[field.name] = bool
            elif field.type != field.TYPE_BYTES:
                found[field.name] = int
        _SCALARS[name] = found
    return found


def fill(message: Message, *sources: Mapping[str, Any]) -> Message:
    """Copy the values named like scalar fields of ``message`` into it; ignore the rest."""
    fields = _scalars(message)
    for values in sources:
        for name, value in values.items():
            want = fields.get(name)
            if want is None or value is None:
                continue
            if want is int and (isinstance(value, bool) or not isinstance(value, int)):
                continue
            setattr(message, name, want(value))
    return message


def claim_result(outcome: Redeemed, message: pb.ClaimResult | None = None) -> pb.ClaimResult:
    """The answer to a claim or capture, in ``message`` if given (a field of a stream's
    answer, filled where it is rather than copied into it)."""
    if message is None:
        message = pb.ClaimResult()
    fill(message, outcome.body, outcome.result)
    if outcome.kind == "capture":
        message.released_fen = released_on_capture(outcome.result)
    message.log_index = outcome.index
    message.at = outcome.at
    message.replayed = outcome.replayed
    return message


def hold_message(outcome: Redeemed) -> pb.Hold:
    message = pb.Hold(status="open")
    fill(message, outcome.body, outcome.result)
    message.log_index = outcome.index
    message.replayed = outcome.replayed
    return message


def void_message(outcome: Redeemed) -> pb.VoidResult:
    message = pb.VoidResult()
    fill(message, outcome.body, outcome.result)
    message.log_index = outcome.index
    return message


def claim_record(outcome: Redeemed) -> pb.ClaimRecord:
    body = pb.ClaimBody()
    fill(body, outcome.body)
    body.voucher = str(outcome.result.get("voucher", body.voucher))
    return pb.ClaimRecord(kind=outcome.kind, body=body, result=claim_result(outcome))


def balance_message(view: Mapping[str, Any]) -> pb.Balance:
    message = fill(pb.Balance(), view)
    assert isinstance(message, pb.Balance)
    for name, limit, remaining in view["caps"]:
        message.caps.add(name=name, limit_fen=limit, remaining_fen=remaining)
    return message


def voucher_message(view: Mapping[str, Any]) -> pb.VerifyVoucherResponse:
    message = fill(pb.VerifyVoucherResponse(), view)
    assert isinstance(message, pb.VerifyVoucherResponse)
    message.accepted_centres.extend(view["accepted_centres"])
    return message


def statement_message(
    found: settlement.Statement, *, full: bool, page: Mapping[str, Any] | None = None
) -> pb.Statement:
    """A statement as a ``suanli.v1.Statement``; with ``full``, its totals by programme and
    the page of lines in ``page`` (``ledger.usecases.views.statements.statement_lines``)."""
    header = found.header()
    message = pb.Statement(
        statement_id=found.id,
        centre=found.centre,
        period=found.period.text,
        total_subsidy_fen=found.amount_fen,
        total_cost_fen=found.cost_fen,
        log_index=found.index,
        at=format_time(found.at),
        cadence=header["cadence"],
        period_start=header["period_start"],
        period_end=header["period_end"],
        sequence=found.sequence,
        previous=found.previous or "",
        line_count=found.lines,
        status="open" if found.is_open else "closed",
        lines_sha256=found.chain.hex(),
        closed_index=found.closed_index or 0,
    )
    if not full:
        return message
    for row in found.totals()["by_programme"]:
        fill(message.by_programme.add(subsidy_fen=row["amount_fen"]), row)
    if page is None:
        return message
    for line in page["lines"]:
        reversed_index = line["reversed_index"]
        added = message.lines.add(
            log_index=line["claim_index"],
            subsidy_fen=line["amount_fen"],
            decided_subsidy_fen=line["subsidy_fen"],
            reversed_index=-1 if reversed_index is None else reversed_index,
        )
        fill(added, {k: v for k, v in line.items() if k not in _LINE_RENAMED})
    message.next_line = page["next"] or 0
    return message


# statement line fields whose protobuf name differs (set explicitly above)
_LINE_RENAMED = frozenset({"claim_index", "amount_fen", "subsidy_fen", "reversed_index"})


def refusal_status(error: LedgerError) -> grpc.Status:
    """The gRPC status for ``error``: its code, message and an ErrorInfo in the details."""
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=ERROR_DOMAIN, metadata=error.details
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(
        code=grpc_code(error).value[0], message=error.message, details=[detail]
    )
    return rpc_status.to_status(status)


def refusal_message(error: LedgerError) -> pb.Refusal:
    """A refusal inside a ClaimStream answer: the same code, reason and details."""
    return pb.Refusal(
        code=grpc_code(error).value[0],
        reason=error.reason,
        domain=ERROR_DOMAIN,
        message=error.message,
        metadata=error.details,
    )
