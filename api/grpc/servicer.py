"""The centre-facing gRPC server: ``suanli.v1.Redemption`` over mutual TLS.

One request goes through these steps, each of which can refuse it (and a refusal writes
nothing):

1. **Size and shape.** The request bytes are parsed by this module (not by gRPC), so that a
   message over ``MAX_RECEIVE`` bytes is refused with RESOURCE_EXHAUSTED and ErrorInfo
   ``MESSAGE_TOO_LARGE``, and bytes that are no protobuf message with
   ``MALFORMED_MESSAGE``. gRPC itself refuses anything over ``HARD_RECEIVE`` (plain
   RESOURCE_EXHAUSTED), so that no peer can make the server buffer more than that.
2. **Who is calling.** ``CentreAuthInterceptor`` takes the centre from the client
   certificate's URI SAN ``suanli:centre:<id>`` (verified by TLS against the CA) and puts it
   in ``current_centre`` for the call; no such SAN: UNAUTHENTICATED.
3. **The signed write** (``prepare``): the body's centre must be the certificate's
   (CERTIFICATE_MISMATCH); ``at`` must parse and be within ``claim_skew_seconds`` of the
   service clock (MALFORMED_TIME, CLOCK_SKEW); the key must be registered in the log for
   that centre (UNKNOWN_KEY, CENTRE_MISMATCH); the Ed25519 signature must verify
   (BAD_SIGNATURE). All of this runs on the event loop, outside the sequencer thread, with
   verifier keys parsed once and cached.
4. **The ledger.** The write is submitted to the ``Sequencer`` (group commit). Inside the
   shared transaction, after catching up with other processes, an idempotency lookup of
   (centre, record id) answers a retry with the first answer, or refuses a different body
   with ALREADY_EXISTS; otherwise the entry is applied by the fold (the domain rules) and
   appended. A call whose deadline passed while it waited is dropped before it is applied.

Refusals are gRPC statuses from ``api.errors.grpc_code`` with a ``google.rpc.ErrorInfo``
(domain ``suanli.ledger``, the reason, the details as metadata) in the status details.

The server runs on its own asyncio event loop in a background thread (``GrpcServer``), so
that it can sit beside uvicorn in ``suanli serve`` and beside pytest in tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from suanli.v1 import redemption_pb2 as pb

from api import metrics
from api.bootstrap import Service
from api.devpki import CENTRE_URI_PREFIX, TlsFiles, ensure_dev_pki, server_files
from api.errors import ERROR_DOMAIN, grpc_code
from ledger import claims, credential, settlement, vouchers
from ledger.canonical import MAX_SAFE_INT
from ledger.entry import Entry, Signature
from ledger.errors import (
    Conflict,
    Denied,
    InvalidInput,
    LedgerError,
    NotFound,
    Refused,
    VerificationError,
)
from ledger.keys import Verifier
from ledger.state import LedgerState
from ledger.store.sequencer import Sequencer
from ledger.store.unit_of_work import FoldedLog, Transaction
from ledger.timeutil import format_time, parse_time

log = logging.getLogger("suanli.grpc")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Redemption"].full_name  # "suanli.v1.Redemption"
MAX_RECEIVE = 1 << 20  # 1 MiB: larger requests are refused with MESSAGE_TOO_LARGE
HARD_RECEIVE = 4 << 20  # gRPC drops anything larger before it reaches this module
MAX_SEND = 4 << 20
STREAM_WINDOW = 4096  # claims of one ClaimStream unanswered at once (back-pressure)
STREAM_CHUNKS_IN_FLIGHT = 2  # chunks of one ClaimStream waiting for the sequencer
DEFAULT_GRACE = 10.0

current_centre: ContextVar[str] = ContextVar("suanli_centre")


class MessageTooLarge(LedgerError):
    kind = "exhausted"
    reason = "MESSAGE_TOO_LARGE"


class DeadlinePassed(LedgerError):
    """The caller's deadline passed before its request reached the ledger; never applied."""

    kind = "deadline"
    reason = "DEADLINE_EXCEEDED"


def refusal_status(error: LedgerError) -> grpc.Status:
    """The gRPC status for ``error``: its code, message and an ErrorInfo in the details."""
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=ERROR_DOMAIN, metadata=error.details
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    code = grpc.StatusCode.DEADLINE_EXCEEDED if isinstance(error, DeadlinePassed) else None
    code = code or grpc_code(error)
    status = status_pb2.Status(code=code.value[0], message=error.message, details=[detail])
    return rpc_status.to_status(status)


def refusal_message(error: LedgerError) -> pb.Refusal:
    code = grpc.StatusCode.DEADLINE_EXCEEDED if isinstance(error, DeadlinePassed) else None
    code = code or grpc_code(error)
    return pb.Refusal(
        code=code.value[0],
        reason=error.reason,
        domain=ERROR_DOMAIN,
        message=error.message,
        metadata=error.details,
    )


# --- 1. reading requests -------------------------------------------------------------------


@dataclass(frozen=True)
class Unreadable:
    """A request this module could not accept as a message: too large or not protobuf."""

    error: LedgerError


def reader(cls: type[Message], limit: int = MAX_RECEIVE) -> Callable[[bytes], Any]:
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
            return cls.FromString(data)
        except DecodeError as exc:
            return Unreadable(
                InvalidInput(f"not a valid {name} message: {exc}", reason="MALFORMED_MESSAGE")
            )

    return read


# --- 2. who is calling -------------------------------------------------------------------


def centre_from_auth(auth: Mapping[str, Iterable[bytes]]) -> str | None:
    """The one ``suanli:centre:<id>`` URI SAN of the verified client certificate, if any."""
    found = {
        san.decode("utf-8", "replace")[len(CENTRE_URI_PREFIX) :]
        for san in auth.get("x509_subject_alternative_name", ())
        if san.startswith(CENTRE_URI_PREFIX.encode())
    }
    return found.pop() if len(found) == 1 else None


_H = TypeVar("_H")


class CentreAuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authenticate every Redemption call by its client certificate's centre.

    TLS has already verified the certificate chain (client auth is required); this takes
    the centre id from the certificate and sets ``current_centre`` for the handler.
    Standard services (health, reflection) pass through.
    """

    def __init__(self, service_name: str = SERVICE_NAME) -> None:
        self._prefix = f"/{service_name}/"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(self._prefix):
            return handler
        return _wrap_handler(handler, _authenticate)


async def _authenticate(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    centre = centre_from_auth(context.auth_context())
    if centre is None:
        error = LedgerError(
            "the client certificate names no centre: it needs exactly one URI SAN "
            f"{CENTRE_URI_PREFIX}<centre id>",
            reason="NO_CENTRE_CERTIFICATE",
        )
        error.kind = "unauthenticated"
        await _abort(context, error)
    current_centre.set(centre)  # type: ignore[arg-type]


def _wrap_handler(
    handler: grpc.RpcMethodHandler,
    before: Callable[[grpc.aio.ServicerContext[Any, Any]], Awaitable[None]],
) -> grpc.RpcMethodHandler:
    """The same handler with ``before(context)`` awaited first (in the call's own task)."""
    if handler.request_streaming and handler.response_streaming:
        inner_ss = handler.stream_stream

        async def stream_stream(requests: Any, context: Any) -> AsyncIterator[Any]:
            await before(context)
            async for response in inner_ss(requests, context):
                yield response

        return grpc.stream_stream_rpc_method_handler(
            stream_stream, handler.request_deserializer, handler.response_serializer
        )
    if handler.response_streaming:
        inner_us = handler.unary_stream

        async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            await before(context)
            async for response in inner_us(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer
        )
    if handler.request_streaming:
        inner_su = handler.stream_unary

        async def stream_unary(requests: Any, context: Any) -> Any:
            await before(context)
            return await inner_su(requests, context)

        return grpc.stream_unary_rpc_method_handler(
            stream_unary, handler.request_deserializer, handler.response_serializer
        )
    inner_uu = handler.unary_unary

    async def unary_unary(request: Any, context: Any) -> Any:
        await before(context)
        return await inner_uu(request, context)

    return grpc.unary_unary_rpc_method_handler(
        unary_unary, handler.request_deserializer, handler.response_serializer
    )


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: LedgerError) -> None:
    metrics.REFUSALS.labels(error.reason).inc()
    status = refusal_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)


# --- 3. signed writes ----------------------------------------------------------------------


@dataclass(frozen=True)
class CentreKey:
    verifier: Verifier
    centre: str | None
    roles: frozenset[str]


class KeyCache:
    """Verifier keys by key id, parsed once from the log's key registry.

    A registered key never changes its public key or centre (retiring is checked again by
    the fold when the entry is applied), so positive answers are cached for good.
    """

    def __init__(self, ledger: FoldedLog) -> None:
        self.ledger = ledger
        self._keys: dict[str, CentreKey] = {}

    def cached(self, key_id: str) -> CentreKey | None:
        found = self._keys.get(key_id)
        if found is None:
            registered = self.ledger.state.registry.keys.get(key_id)
            if registered is not None:
                found = CentreKey(registered.verifier, registered.centre, registered.roles)
                self._keys[key_id] = found
        return found

    def load(self, key_id: str) -> CentreKey | None:
        """Look again after catching up with the log (blocking: run it off the loop)."""
        self.ledger.refresh()
        return self.cached(key_id)


_BODY_FIELDS: dict[str, tuple[str, ...]] = {
    kind: tuple(f.name for f in cls.DESCRIPTOR.fields)
    for kind, cls in (
        ("claim", pb.ClaimBody),
        ("hold", pb.HoldBody),
        ("capture", pb.CaptureBody),
        ("void", pb.VoidBody),
    )
}
_INT_REASON = {"quantity": "MALFORMED_QUANTITY"}


def body_json(kind: str, body: Message) -> dict[str, Any]:
    """The JSON body of a ``kind`` entry from its protobuf message: every field, as named."""
    out: dict[str, Any] = {}
    for name in _BODY_FIELDS[kind]:
        value = getattr(body, name)
        if isinstance(value, int) and not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise InvalidInput(
                f"body.{name} = {value} is outside the JSON-safe integer range ±(2^53-1)",
                reason=_INT_REASON.get(name, "MALFORMED_AMOUNT"),
                details={"field": name},
            )
        out[name] = value
    return out


@dataclass(frozen=True)
class Prepared:
    """A signed write that passed the edge checks, ready for the sequencer."""

    kind: str
    centre: str
    entry: Entry
    deadline: float | None  # time.monotonic() by which the caller stops waiting

    @property
    def body(self) -> Mapping[str, Any]:
        return self.entry.body

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise DeadlinePassed(f"the caller's deadline passed before its {self.kind} was applied")


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What the ledger decided: the entry's log index, kind, body and result.

    ``at`` is the entry's effective time in the ledger (``max`` of its signed time and the
    time of the entry before it). ``replayed`` marks a first answer given again to a retry.
    """

    index: int
    kind: str
    body: Mapping[str, Any]
    result: Mapping[str, Any]
    at: str
    replayed: bool = False

    def key(self) -> tuple[int, str, Mapping[str, Any]]:
        return self.index, self.kind, self.body


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


def _fill(message: Message, values: Mapping[str, Any]) -> None:
    """Copy the values named like scalar fields of ``message`` into it; ignore the rest."""
    fields = _scalars(message)
    for name, value in values.items():
        want = fields.get(name)
        if want is None or value is None:
            continue
        if want is int and (isinstance(value, bool) or not isinstance(value, int)):
            continue
        setattr(message, name, want(value))


def claim_result(outcome: Outcome) -> pb.ClaimResult:
    message = pb.ClaimResult()
    _fill(message, outcome.body)
    _fill(message, outcome.result)
    if outcome.kind == "capture":
        held = int(outcome.result.get("held_fen", 0))
        message.released_fen = max(0, held - message.subsidy_fen)
    message.log_index = outcome.index
    message.at = outcome.at
    message.replayed = outcome.replayed
    return message


# --- the service ---------------------------------------------------------------------------


class Redemption:
    """The handlers of ``suanli.v1.Redemption`` (async, on the server's event loop)."""

    def __init__(
        self,
        service: Service,
        sequencer: Sequencer,
        readers: ThreadPoolExecutor,
        skew_seconds: float | None = None,
    ) -> None:
        self.service = service
        self.ledger = service.ledger
        self.sequencer = sequencer
        self.readers = readers
        self.skew = float(
            service.settings.claim_skew_seconds if skew_seconds is None else skew_seconds
        )
        self.keys = KeyCache(self.ledger)

    # -- plumbing --

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        def uu(fn: Callable[..., Any], req: type[Message], resp: type[Message]) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(fn), reader(req), resp.SerializeToString
            )

        return {
            "VerifyVoucher": uu(
                self.verify_voucher, pb.VerifyVoucherRequest, pb.VerifyVoucherResponse
            ),
            "GetBalance": uu(self.get_balance, pb.GetBalanceRequest, pb.Balance),
            "Authorize": uu(self.authorize, pb.AuthorizeRequest, pb.Hold),
            "Capture": uu(self.capture, pb.CaptureRequest, pb.ClaimResult),
            "Void": uu(self.void, pb.VoidRequest, pb.VoidResult),
            "Claim": uu(self.claim, pb.ClaimRequest, pb.ClaimResult),
            "ClaimStream": grpc.stream_stream_rpc_method_handler(
                self.claim_stream,
                reader(pb.ClaimStreamRequest),
                pb.ClaimStreamResponse.SerializeToString,
            ),
            "ListClaims": grpc.unary_stream_rpc_method_handler(
                self.list_claims, reader(pb.ListClaimsRequest), pb.ClaimRecord.SerializeToString
            ),
            "GetStatement": uu(self.get_statement, pb.GetStatementRequest, pb.Statement),
            "ListStatements": uu(
                self.list_statements, pb.ListStatementsRequest, pb.ListStatementsResponse
            ),
        }

    def _unary(self, fn: Callable[[Any, str, float | None], Awaitable[Message]]) -> Any:
        method = fn.__name__

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
            started = time.perf_counter()
            try:
                deadline = _deadline(context)
                if isinstance(request, Unreadable):
                    raise request.error
                return await fn(request, current_centre.get(), deadline)
            except LedgerError as error:
                await _abort(context, error)
                raise AssertionError("unreachable") from error  # abort() always raises
            finally:
                metrics.RPC_LATENCY.labels(method).observe(time.perf_counter() - started)

        return call

    async def read(self, fn: Callable[[], _H]) -> _H:
        """Run ``fn`` on a reader thread against the committed state, caught up first."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.readers, self._read_committed, fn)

    def _read_committed(self, fn: Callable[[], _H]) -> _H:
        # The ledger lock is held by the sequencer for a whole transaction, so under it the
        # state is exactly the committed log (never a batch that might still roll back).
        with self.ledger.reading():
            return fn()

    async def prepare(
        self, kind: str, request: Any, centre: str, deadline: float | None
    ) -> Prepared:
        """Check a signed write at the edge; raise the refusal if it fails a check."""
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
        try:
            signed_at = parse_time(request.at)
        except InvalidInput as exc:
            raise InvalidInput(
                f"at: {exc.message}", reason="MALFORMED_TIME", details={"field": "at"}
            ) from exc
        now = self.ledger.clock()
        skew = (signed_at - now).total_seconds()
        if abs(skew) > self.skew:
            raise Refused(
                f"the {kind} was signed at {request.at}, {skew:+.0f} s from the service clock "
                f"({now.isoformat()}); at most ±{self.skew:.0f} s is accepted: sign it now",
                reason="CLOCK_SKEW",
                details={"skew_seconds": f"{skew:.3f}", "tolerance_seconds": f"{self.skew:.0f}"},
            )
        key = self.keys.cached(request.key_id)
        if key is None:
            loop = asyncio.get_running_loop()
            key = await loop.run_in_executor(self.readers, self.keys.load, request.key_id)
        if key is None:
            raise Denied(
                f"key {request.key_id!r} is not registered in the log",
                reason="UNKNOWN_KEY",
                details={"key_id": request.key_id},
            )
        if "centre" not in key.roles or key.centre != centre:
            raise Denied(
                f"key {request.key_id} is not a key of centre {centre!r}",
                reason="CENTRE_MISMATCH",
                details={"key_id": request.key_id, "key_centre": key.centre or ""},
            )
        entry = Entry(kind, request.at, body)
        if len(request.signature) != 64 or not key.verifier.is_valid(
            entry.message(), request.signature
        ):
            raise Denied(
                f"the signature is not {request.key_id}'s Ed25519 signature of this {kind} "
                "(see docs/grpc.md for the signed bytes)",
                reason="BAD_SIGNATURE",
                details={"key_id": request.key_id},
            )
        signed = Entry(kind, request.at, body, (Signature(request.key_id, request.signature),))
        return Prepared(kind, centre, signed, deadline)

    async def submit(self, work: Callable[[Transaction], _H]) -> _H:
        """Run ``work`` in the sequencer's next batch and wait for its commit."""
        future: Future[_H] = self.sequencer.submit(work)
        return await asyncio.wrap_future(future)

    # -- signed writes --

    async def claim(self, request: pb.ClaimRequest, centre: str, deadline: float | None) -> Any:
        prepared = await self.prepare("claim", request, centre, deadline)
        return claim_result(await self.submit(_claim_work(prepared)))

    async def capture(self, request: pb.CaptureRequest, centre: str, deadline: float | None) -> Any:
        prepared = await self.prepare("capture", request, centre, deadline)
        return claim_result(await self.submit(_claim_work(prepared)))

    async def authorize(
        self, request: pb.AuthorizeRequest, centre: str, deadline: float | None
    ) -> Any:
        prepared = await self.prepare("hold", request, centre, deadline)
        outcome = await self.submit(_hold_work(prepared))
        message = pb.Hold(status="open")
        _fill(message, outcome.body)
        _fill(message, outcome.result)
        message.log_index = outcome.index
        message.replayed = outcome.replayed
        return message

    async def void(self, request: pb.VoidRequest, centre: str, deadline: float | None) -> Any:
        prepared = await self.prepare("void", request, centre, deadline)
        outcome = await self.submit(_void_work(prepared))
        message = pb.VoidResult()
        _fill(message, outcome.body)
        _fill(message, outcome.result)
        message.log_index = outcome.index
        return message

    async def claim_stream(
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ClaimStreamResponse]:
        """One answer per claim, in the order the claims came in (see ``_ClaimStream``)."""
        stream = _ClaimStream(self, current_centre.get(), _deadline(context))
        async for answer in stream.run(requests, context):
            yield answer

    # -- reads --

    async def verify_voucher(
        self, request: pb.VerifyVoucherRequest, centre: str, deadline: float | None
    ) -> Any:
        def answer() -> pb.VerifyVoucherResponse:
            state = self.ledger.state
            now = self._now()
            voucher = vouchers.voucher_of(state, request.voucher)
            view = vouchers.voucher_view(state, request.voucher, now)
            message = pb.VerifyVoucherResponse(
                voucher=voucher.id,
                holder=voucher.holder,
                programme=voucher.programme,
                status=view["status"],
                face_value_fen=voucher.face_value_fen,
                balance_fen=view["balance_fen"],
                rate_bp=voucher.rate_bp,
                valid_from=format_time(voucher.valid_from),
                valid_until=format_time(voucher.valid_until),
                usage_start=format_time(voucher.usage_start),
                usage_end=format_time(voucher.usage_end),
                accepted_centres=list(voucher.centres),
                issuer_key_id=voucher.issuer_key,
                log_index=voucher.log_index,
            )
            try:
                _check_usable_here(state, voucher, centre, now)
            except LedgerError as why:
                message.reason = why.reason
            else:
                message.usable = True
            if request.credential:
                _check_credential(state, voucher, request.credential)
                message.credential_checked = True
            return message

        return await self.read(answer)

    async def get_balance(
        self, request: pb.GetBalanceRequest, centre: str, deadline: float | None
    ) -> Any:
        def answer() -> pb.Balance:
            state = self.ledger.state
            now = self._now()
            voucher = vouchers.voucher_of(state, request.voucher)
            _check_accepted(voucher, centre)
            view = vouchers.voucher_view(state, request.voucher, now)
            usage_at = min(max(now, voucher.usage_start), voucher.usage_end)
            lines, _ = vouchers.cap_lines(state, voucher, usage_at, now)
            limits = {line.name: line.limit for line in lines if line.limit is not None}
            caps = sorted(view["caps"].items(), key=lambda item: (item[1], item[0]))
            message = pb.Balance(
                voucher=voucher.id,
                face_value_fen=voucher.face_value_fen,
                balance_fen=voucher.face_value_fen - view["used_fen"],
                held_fen=view["held_fen"],
                available_fen=min((rem for _, rem in caps), default=0),
                log_size=state.size,
            )
            for name, remaining in caps:
                message.caps.add(name=name, limit_fen=limits.get(name, 0), remaining_fen=remaining)
            return message

        return await self.read(answer)

    def _now(self) -> datetime:
        """The service clock, never behind the ledger's own time."""
        now = self.ledger.clock()
        ledger_time = self.ledger.state.time
        return ledger_time if ledger_time is not None and ledger_time > now else now

    async def list_claims(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ClaimRecord]:
        if isinstance(request, Unreadable):
            await _abort(context, request.error)
            return
        centre = current_centre.get()

        def snapshot() -> list[Outcome]:
            book = claims.book(self.ledger.state)
            if request.voucher:
                keys = [k for k in book.by_voucher.get(request.voucher, []) if k[0] == centre]
                records = [book.claims[k] for k in keys]
            else:
                records = [r for (c, _), r in book.claims.items() if c == centre]
            chosen = [r for r in records if r.index >= request.from_index]
            chosen.sort(key=lambda r: r.index)
            if request.limit:
                chosen = chosen[: request.limit]
            return [Outcome(r.index, r.kind, r.body, r.result, format_time(r.at)) for r in chosen]

        for outcome in await self.read(snapshot):
            body = pb.ClaimBody()
            _fill(body, outcome.body)
            body.voucher = str(outcome.result.get("voucher", body.voucher))
            yield pb.ClaimRecord(kind=outcome.kind, body=body, result=claim_result(outcome))

    async def get_statement(
        self, request: pb.GetStatementRequest, centre: str, deadline: float | None
    ) -> Any:
        """A settlement statement of the calling centre, with its lines, totals and the
        signed statement.issue entry; another centre's is NOT_FOUND like a missing one."""

        def answer() -> pb.Statement:
            state = self.ledger.state
            found = settlement.book(state).statements.get(request.statement_id)
            if found is None or found.centre != centre:
                raise NotFound(
                    f"no settlement statement {request.statement_id!r} for centre {centre}",
                    reason="UNKNOWN_STATEMENT",
                    details={"statement_id": request.statement_id},
                )
            entry = self.ledger.store.entries(found.index, found.index + 1)
            return statement_message(found, entry[0] if entry else b"", full=True)

        return await self.read(answer)

    async def list_statements(
        self, request: pb.ListStatementsRequest, centre: str, deadline: float | None
    ) -> Any:
        """The calling centre's statements in log order (optionally of one period), without
        their lines: GetStatement has those."""

        def answer() -> pb.ListStatementsResponse:
            book = settlement.book(self.ledger.state)
            listed = [book.statements[s] for s in book.by_centre.get(centre, [])]
            if request.period:
                listed = [s for s in listed if s.period == request.period]
            return pb.ListStatementsResponse(
                statements=[statement_message(s, b"", full=False) for s in listed]
            )

        return await self.read(answer)


def statement_message(found: settlement.Statement, entry: bytes, *, full: bool) -> pb.Statement:
    """A recorded statement as a ``suanli.v1.Statement``."""
    body = found.body
    totals = body["totals"]
    message = pb.Statement(
        statement_id=found.id,
        centre=found.centre,
        period=found.period,
        total_subsidy_fen=totals["amount_fen"],
        total_cost_fen=totals["cost_fen"],
        log_index=found.index,
        at=format_time(found.at),
        cadence=body["cadence"],
        period_start=body["period_start"],
        period_end=body["period_end"],
        sequence=found.sequence,
        previous=body["previous"] or "",
        line_count=totals["lines"],
    )
    if not full:
        return message
    for line in body["lines"]:
        reversed_index = line["reversed_index"]
        message.lines.add(
            record_id=line["record_id"],
            voucher=line["voucher"],
            programme=line["programme"],
            cost_fen=line["cost_fen"],
            subsidy_fen=line["amount_fen"],
            log_index=line["claim_index"],
            line=line["line"],
            type=line["type"],
            kind=line["kind"],
            round=line["round"],
            holder=line["holder"],
            captured_at=line["captured_at"],
            decided_subsidy_fen=line["subsidy_fen"],
            clawed_back_fen=line["clawed_back_fen"],
            reversed_index=-1 if reversed_index is None else reversed_index,
            settled_before_fen=line["settled_before_fen"],
        )
    for row in totals["by_programme"]:
        message.by_programme.add(
            round=row["round"],
            programme=row["programme"],
            lines=row["lines"],
            cost_fen=row["cost_fen"],
            subsidy_fen=row["amount_fen"],
        )
    for row in totals["by_voucher"]:
        message.by_voucher.add(
            round=row["round"],
            programme=row["programme"],
            voucher=row["voucher"],
            holder=row["holder"],
            lines=row["lines"],
            cost_fen=row["cost_fen"],
            subsidy_fen=row["amount_fen"],
        )
    message.entry = entry
    return message


class _ClaimStream:
    """A ClaimStream call: read and check claims while earlier ones wait for their commit.

    Checked claims gather in ``ready`` and go to the sequencer as one chunk (one work item,
    one future) whenever fewer than ``STREAM_CHUNKS_IN_FLIGHT`` chunks of this stream are
    waiting, so the chunk size follows the commit rate. At most ``STREAM_WINDOW`` claims are
    unanswered; a refusal at the edge is queued behind the chunks before it.
    """

    def __init__(self, redemption: Redemption, centre: str, deadline: float | None) -> None:
        self.redemption = redemption
        self.centre = centre
        self.deadline = deadline
        self.answers: asyncio.Queue[_StreamItem] = asyncio.Queue()
        self.window = asyncio.Semaphore(STREAM_WINDOW)
        self.ready: list[tuple[int, Prepared]] = []
        self.in_flight = 0

    def flush(self, force: bool = False) -> None:
        if not self.ready or (self.in_flight >= STREAM_CHUNKS_IN_FLIGHT and not force):
            return
        chunk, self.ready = self.ready, []
        future = self.redemption.sequencer.submit(_chunk_work([p for _, p in chunk]))
        self.in_flight += 1
        wrapped = asyncio.wrap_future(future)
        wrapped.add_done_callback(self._chunk_done)
        self.answers.put_nowait(([seq for seq, _ in chunk], wrapped))

    def _chunk_done(self, _: object) -> None:
        self.in_flight -= 1
        self.flush()

    async def read(self, requests: AsyncIterator[Any]) -> None:
        try:
            async for request in requests:
                if isinstance(request, Unreadable):
                    self.flush(force=True)
                    self.answers.put_nowait(request)
                    return
                await self.window.acquire()
                try:
                    prepared = await self.redemption.prepare(
                        "claim", request.claim, self.centre, self.deadline
                    )
                except LedgerError as refusal:
                    self.flush(force=True)  # keep the answers in order
                    self.answers.put_nowait((request.seq, refusal))
                    continue
                self.ready.append((request.seq, prepared))
                self.flush()
        finally:
            self.flush(force=True)
            self.answers.put_nowait(None)

    async def run(
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ClaimStreamResponse]:
        reading = asyncio.create_task(self.read(requests))
        try:
            while (item := await self.answers.get()) is not None:
                if isinstance(item, Unreadable):
                    await _abort(context, item.error)
                    return
                seqs, outcome = item
                if isinstance(seqs, int):
                    assert isinstance(outcome, LedgerError)
                    self.window.release()
                    yield _stream_answer(seqs, outcome)
                    continue
                assert isinstance(outcome, asyncio.Future)
                for seq, answer in zip(seqs, await outcome, strict=True):
                    self.window.release()
                    yield _stream_answer(seq, answer)
            await reading  # re-raise a failure of the reader
        finally:
            reading.cancel()
            while not self.answers.empty():  # the caller went away: drop what has not started
                item = self.answers.get_nowait()
                if isinstance(item, tuple) and isinstance(item[1], asyncio.Future):
                    item[1].cancel()


_StreamItem = (
    tuple[list[int], "asyncio.Future[list[Outcome | LedgerError]]"]
    | tuple[int, LedgerError]
    | Unreadable
    | None
)


def _stream_answer(seq: int, answer: Outcome | LedgerError) -> pb.ClaimStreamResponse:
    if isinstance(answer, LedgerError):
        metrics.REFUSALS.labels(answer.reason).inc()
        return pb.ClaimStreamResponse(seq=seq, refusal=refusal_message(answer))
    return pb.ClaimStreamResponse(seq=seq, result=claim_result(answer))


def _deadline(context: grpc.aio.ServicerContext[Any, Any]) -> float | None:
    """The call's deadline on time.monotonic(); refuse at once if it has already passed."""
    remaining: float | None = context.time_remaining()
    if remaining is None:
        return None
    if remaining <= 0:
        raise DeadlinePassed("the call's deadline had passed when it arrived")
    return time.monotonic() + remaining


# --- work done inside the sequencer's transaction -------------------------------------------


def _differences(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, str]:
    return {
        name: f"{first.get(name)!r} -> {second.get(name)!r}"
        for name in sorted(set(first) | set(second))
        if first.get(name) != second.get(name)
    }


def _conflict(
    reason: str, what: str, index: int, first: Mapping[str, Any], now: Mapping[str, Any]
) -> Conflict:
    """ALREADY_EXISTS: the idempotency key was used before with another body."""
    diff = _differences(first, now)
    changed = "; ".join(f"{k}: {v}" for k, v in diff.items())
    return Conflict(
        f"{what} was already recorded at log index {index} with a different body ({changed}); "
        "a retry must repeat the first body exactly",
        reason=reason,
        details={"log_index": index, **{f"diff.{k}": v for k, v in diff.items()}},
    )


def _appended(tx: Transaction, prepared: Prepared) -> Outcome:
    # The edge verified the signature against the key's registered vkey (a key id names
    # one vkey for ever); the fold still checks the key is registered and active here.
    done = tx.append(prepared.entry, signatures_checked=True)
    at = tx.state.time
    return Outcome(
        done.index,
        prepared.kind,
        prepared.body,
        done.result,
        format_time(at) if at is not None else prepared.entry.at,
    )


def _claim_work(prepared: Prepared) -> Callable[[Transaction], Outcome]:
    """Claim or capture, exactly once per (centre, record id)."""
    centre, record_id = prepared.centre, str(prepared.body["record_id"])

    def work(tx: Transaction) -> Outcome:
        prepared.check_deadline()
        first = claims.lookup_claim(tx.state, centre, record_id)
        if first is not None:
            index, body, result = first
            if body != dict(prepared.body):
                raise _conflict(
                    "ALREADY_CLAIMED", f"record {centre}/{record_id}", index, body, prepared.body
                )
            record = claims.claim_of(tx.state, centre, record_id)
            return Outcome(index, record.kind, body, result, format_time(record.at), True)
        outcome = _appended(tx, prepared)
        metrics.CLAIMS.labels(centre, prepared.kind).inc()
        metrics.SUBSIDY_FEN.labels(centre).inc(int(outcome.result.get("subsidy_fen", 0)))
        return outcome

    return work


def _hold_work(prepared: Prepared) -> Callable[[Transaction], Outcome]:
    """A hold, exactly once per (centre, hold id): a retry gets the hold as it is now."""
    centre, hold_id = prepared.centre, str(prepared.body["hold_id"])

    def work(tx: Transaction) -> Outcome:
        prepared.check_deadline()
        hold = claims.book(tx.state).holds.get((centre, hold_id))
        if hold is None:
            outcome = _appended(tx, prepared)
            rate = vouchers.voucher_of(tx.state, str(prepared.body["voucher"])).rate_bp
            return Outcome(*outcome.key(), {**outcome.result, "rate_bp": rate}, outcome.at)
        first = {
            "centre": hold.centre,
            "hold_id": hold.hold_id,
            "voucher": hold.voucher,
            "estimated_cost_fen": hold.estimated_cost_fen,
            "expires_at": format_time(hold.expires_at),
        }
        now = dict(prepared.body)
        with contextlib.suppress(LedgerError):
            now["expires_at"] = format_time(parse_time(str(now["expires_at"])))
        if first != now:
            raise _conflict("HOLD_EXISTS", f"hold {centre}/{hold_id}", hold.index, first, now)
        view = claims.hold_view(tx.state, centre, hold_id)
        view["rate_bp"] = vouchers.voucher_of(tx.state, hold.voucher).rate_bp
        return Outcome(hold.index, "hold", first, view, format_time(hold.at), True)

    return work


def _void_work(prepared: Prepared) -> Callable[[Transaction], Outcome]:
    """A void; voiding a hold this centre already voided answers that void again."""
    centre, hold_id = prepared.centre, str(prepared.body["hold_id"])

    def work(tx: Transaction) -> Outcome:
        prepared.check_deadline()
        hold = claims.book(tx.state).holds.get((centre, hold_id))
        if hold is not None and hold.status == "voided" and hold.closed_index is not None:
            result = {"hold_id": hold_id, "released_fen": hold.amount_fen}
            return Outcome(hold.closed_index, "void", prepared.body, result, "", True)
        return _appended(tx, prepared)

    return work


def _check_accepted(voucher: vouchers.Voucher, centre: str) -> None:
    if centre not in voucher.centres:
        raise Refused(
            f"voucher {voucher.id} is not accepted at centre {centre} "
            f"(accepted: {', '.join(voucher.centres)})",
            reason="CENTRE_NOT_ACCEPTED",
            details={"centre": centre, "accepted": ",".join(voucher.centres)},
        )


def _check_usable_here(
    state: LedgerState, voucher: vouchers.Voucher, centre: str, now: datetime
) -> None:
    """The claim path's voucher checks: status, validity, the centre accepted."""
    vouchers.check_usable(state, voucher, now)
    _check_accepted(voucher, centre)


def _check_credential(state: LedgerState, voucher: vouchers.Voucher, token: str) -> None:
    """``token`` must be this voucher's credential, verified with its issuer's key."""
    try:
        issuer = state.registry.get(voucher.issuer_key)
        payload = credential.verify_voucher(token, issuer.verifier)
    except (VerificationError, NotFound) as exc:
        raise InvalidInput(
            f"the credential does not verify with issuer key {voucher.issuer_key}: {exc}",
            reason="BAD_CREDENTIAL",
        ) from None
    if payload.get("voucher") != voucher.id or token != voucher.credential:
        raise InvalidInput(
            f"the credential is not the one issued for voucher {voucher.id}",
            reason="BAD_CREDENTIAL",
        )


def _chunk_work(items: list[Prepared]) -> Callable[[Transaction], list[Outcome | LedgerError]]:
    """Many claims as one work item: each is decided on its own (a refusal changes nothing)."""
    works = [_claim_work(p) for p in items]

    def work(tx: Transaction) -> list[Outcome | LedgerError]:
        answers: list[Outcome | LedgerError] = []
        for one in works:
            try:
                answers.append(one(tx))
            except LedgerError as refusal:
                answers.append(refusal)
        return answers

    return work


# --- the server ----------------------------------------------------------------------------


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    ca, cert, key = files.read()
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )


class GrpcServer:
    """The gRPC server on its own event loop thread.

    ``start()`` binds (port 0 picks a free port) and returns the port; ``stop(grace)``
    stops accepting calls, lets the calls in flight finish for up to ``grace`` seconds,
    then cancels the rest and stops the sequencer after it has committed what it holds.
    """

    def __init__(
        self,
        service: Service,
        address: str | None = None,
        *,
        tls: TlsFiles | None = None,
        sequencer: Sequencer | None = None,
        skew_seconds: float | None = None,
        reader_threads: int = 8,
    ) -> None:
        self.service = service
        self.address = address or service.settings.grpc
        self.tls = tls
        self._own_sequencer = False
        self.sequencer = sequencer or service.sequencer
        self.readers = ThreadPoolExecutor(reader_threads, thread_name_prefix="suanli-grpc-read")
        self.redemption = Redemption(service, self.sequencer, self.readers, skew_seconds)
        self.port: int | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="suanli-grpc", daemon=True
        )
        self._server: grpc.aio.Server | None = None
        self._health: Any = None

    def _run(self, coroutine: Awaitable[_H], timeout: float | None = None) -> _H:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)  # type: ignore[arg-type]

    def start(self) -> int:
        if self.tls is None:
            self.tls = server_files(self.service.settings.data_dir)
            if not (self.tls.ca.exists() and self.tls.cert.exists() and self.tls.key.exists()):
                ensure_dev_pki(self.service.settings.data_dir)
        self._thread.start()
        self.port = self._run(self._start())
        return self.port

    async def _start(self) -> int:
        server = grpc.aio.server(
            interceptors=[CentreAuthInterceptor()],
            options=[
                ("grpc.max_receive_message_length", HARD_RECEIVE),
                ("grpc.max_send_message_length", MAX_SEND),
                ("grpc.so_reuseport", 0),
            ],
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE_NAME, self.redemption.handlers()),)
        )
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        assert self.tls is not None
        port: int = server.add_secure_port(self.address, server_credentials(self.tls))
        if port == 0:
            raise OSError(f"could not bind the gRPC server to {self.address}")
        await server.start()
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._server = server
        log.info("gRPC (mTLS) on %s, port %d", self.address, port)
        return port

    def stop(self, grace: float = DEFAULT_GRACE) -> None:
        if self._server is not None:
            self._run(self._stop(grace))
        if self._own_sequencer:
            self.sequencer.close()
        self.readers.shutdown(wait=True, cancel_futures=True)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()

    async def _stop(self, grace: float) -> None:
        assert self._server is not None
        with contextlib.suppress(Exception):
            await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)
        self._server = None

    def wait(self) -> None:
        if self._server is not None:
            self._run(self._server.wait_for_termination())
