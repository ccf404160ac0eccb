"""The centre side of the gRPC contract: a client that signs for its caller.

    from adapters.client import RedemptionClient
    client = RedemptionClient.from_data_dir("localhost:50051", data_dir, "nscc-cd")
    result = client.claim(usage, voucher="V-...", cost_fen=12_000)

Every write is signed here with the centre's Ed25519 key over the ledger entry it becomes
(docs/grpc.md: ``b"suanli-entry/v1\\n" || JCS({v, kind, at, body})``). Every call has a
deadline. Calls that fail with UNAVAILABLE or DEADLINE_EXCEEDED are retried with
exponential backoff and jitter, re-signed with a fresh ``at``: this is safe because the
ledger answers a repeated (centre, record id) with its first answer (``replayed`` is then
true) and a repeated hold id likewise. Any other failure raises ``RedemptionError`` with
the status code, the ErrorInfo reason and metadata.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from suanli.v1 import redemption_pb2 as pb
from suanli.v1 import redemption_pb2_grpc as pb_grpc

from adapters.credentials import CentreFiles
from adapters.errors import CentreError
from ledger.disclosure import read_disclosure
from ledger.keys import Signer
from ledger.limits import MAX_CLAIMS_PER_MESSAGE
from ledger.publication import concealed
from ledger.timeutil import format_time
from ledger.usage import UsageRecord

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
MAX_MESSAGE = 4 << 20

_T = TypeVar("_T")


class RedemptionError(CentreError):
    """A call the service refused (or that failed for good): code, reason and metadata."""

    def __init__(
        self, code: grpc.StatusCode, reason: str, message: str, metadata: dict[str, str]
    ) -> None:
        super().__init__(f"{code.name} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = metadata

    @classmethod
    def from_rpc(cls, error: grpc.RpcError) -> RedemptionError:
        call: Any = error
        code = call.code() if hasattr(call, "code") else grpc.StatusCode.UNKNOWN
        message = call.details() if hasattr(call, "details") else str(error)
        reason, metadata = code.name, {}
        try:
            status = rpc_status.from_call(call)
        except (ValueError, AttributeError):
            status = None
        if status is not None:
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    reason, metadata = info.reason, dict(info.metadata)
                    break
        return cls(code, reason, message or "", metadata)

    @classmethod
    def from_refusal(cls, refusal: pb.Refusal) -> RedemptionError:
        code = next((c for c in grpc.StatusCode if c.value[0] == refusal.code), None)
        return cls(
            code or grpc.StatusCode.UNKNOWN,
            refusal.reason,
            refusal.message,
            dict(refusal.metadata),
        )


@dataclass(frozen=True)
class ClaimItem:
    """One claim for ``claim_stream``: a usage record, the voucher and the priced cost."""

    usage: UsageRecord
    voucher: str  # the voucher the record's account maps to
    cost_fen: int  # the usage's cost by the centre's rate card (the ledger checks it)


@dataclass(frozen=True)
class StreamResult:
    """The answer to one ``ClaimItem``: a result, or the refusal."""

    item: ClaimItem
    result: pb.ClaimResult | None
    refusal: RedemptionError | None

    @property
    def ok(self) -> bool:
        return self.result is not None


def _read(source: bytes | str | Path) -> bytes:
    return source if isinstance(source, bytes) else Path(source).read_bytes()


def claim_body(usage: UsageRecord, voucher: str, cost_fen: int) -> pb.ClaimBody:
    return pb.ClaimBody(
        centre=usage.centre,
        record_id=usage.record_id,
        voucher=voucher,
        resource=usage.resource,
        quantity=usage.quantity,
        start=format_time(usage.start),
        end=format_time(usage.end),
        cost_fen=cost_fen,
    )


@dataclass(frozen=True)
class Signed:
    """A centre's signature of an entry, and the salts of the members it concealed."""

    at: str
    key_id: str
    signature: bytes
    salts: dict[str, str]

    def fields(self, request: str) -> dict[str, Any]:
        """The fields of ``request`` (a request message name) that carry it."""
        out: dict[str, Any] = {"at": self.at, "key_id": self.key_id, "signature": self.signature}
        if request in ("ClaimRequest", "CaptureRequest"):  # the writes that conceal members
            out["salts"] = self.salts
        return out


def sign_entry(kind: str, body: Any, signer: Signer, at: str) -> Signed:
    """The entry ``kind`` with ``body`` (a ``*Body`` message) as the log will publish it:
    its restricted members concealed with fresh salts (docs/publication.md), signed by
    ``signer`` at ``at``; what the request must carry beside the body."""
    entry = concealed(kind, at, body_dict(body))
    salts = {d.name: d.salt for d in map(read_disclosure, entry.disclosures)}
    return Signed(at, signer.key_id, signer.sign(entry.message()), salts)


def body_dict(body: Any) -> dict[str, Any]:
    """The JSON body a ``*Body`` message stands for: every field, named as in the proto."""
    return {f.name: getattr(body, f.name) for f in body.DESCRIPTOR.fields}


class RedemptionClient:
    """A centre's connection to the ledger (synchronous; thread-safe for concurrent calls).

    target: ``host:port`` of the service. ca, cert, key: PEM bytes or paths of the CA that
    signed the server's certificate and of this centre's client certificate and key.
    signing_key: the centre's Ed25519 key registered in the log. centre: its id.
    """

    def __init__(
        self,
        target: str,
        ca: bytes | str | Path,
        cert: bytes | str | Path,
        key: bytes | str | Path,
        signing_key: Signer,
        centre: str,
        *,
        timeout: float = 10.0,
        retries: int = 5,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        clock: Callable[[], datetime] | None = None,
        server_name: str | None = None,
    ) -> None:
        credentials = grpc.ssl_channel_credentials(_read(ca), _read(key), _read(cert))
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.enable_retries", 0),  # retries are done here, re-signed
        ]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        self.target = target
        self.channel = grpc.secure_channel(target, credentials, options=options)
        self.stub = pb_grpc.RedemptionStub(self.channel)
        self.signer = signing_key
        self.centre = centre
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.clock = clock or (lambda: datetime.now(UTC))

    @classmethod
    def from_data_dir(
        cls, target: str, data_dir: str | Path, centre: str, **options: Any
    ) -> RedemptionClient:
        """A client with the development certificate and signing key ``suanli init`` made."""
        files = CentreFiles.in_data_dir(Path(data_dir), centre)
        return cls.from_files(target, files, centre, **options)

    @classmethod
    def from_files(
        cls, target: str, files: CentreFiles, centre: str, **options: Any
    ) -> RedemptionClient:
        """A client with the credentials in a centre directory (``adapters.credentials``)."""
        signer = Signer.parse(files.signing_key.read_text().strip())
        return cls(target, files.ca, files.cert, files.key, signer, centre, **options)

    def close(self) -> None:
        self.channel.close()

    def wait_serving(self, seconds: float = 60.0, alive: Callable[[], bool] = lambda: True) -> bool:
        """Ask the server's gRPC health service until it answers SERVING (True); False when
        ``seconds`` pass first or ``alive()`` (the server's process, say) turns False."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        health = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and alive():
            try:
                answer = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                time.sleep(0.2)
        return False

    def __enter__(self) -> RedemptionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- signing and retrying --------------------------------------------------------------

    def sign(self, kind: str, body: Any) -> Signed:
        """:func:`sign_entry` with this centre's key, now."""
        return sign_entry(kind, body, self.signer, format_time(self.clock()))

    def _call(self, attempt: Callable[[float], _T], timeout: float | None = None) -> _T:
        """Run ``attempt(deadline_seconds)``, retrying transient failures with backoff."""
        delay = self.backoff
        for tries in range(self.retries + 1):
            try:
                return attempt(timeout or self.timeout)
            except grpc.RpcError as error:
                code = error.code() if hasattr(error, "code") else None
                if code not in RETRYABLE or tries == self.retries:
                    raise RedemptionError.from_rpc(error) from None
            time.sleep(random.uniform(0, delay))  # noqa: S311 - jitter, not a secret
            delay = min(delay * 2, self.max_backoff)
        raise AssertionError("unreachable")

    def _signed(self, rpc: Callable[..., _T], request_type: Any, kind: str, body: Any) -> _T:
        def attempt(deadline: float) -> _T:
            fields = self.sign(kind, body).fields(request_type.DESCRIPTOR.name)
            request = request_type(body=body, **fields)
            return rpc(request, timeout=deadline)

        return self._call(attempt)

    # --- reads -----------------------------------------------------------------------------

    def verify_voucher(self, voucher: str, credential: str = "") -> pb.VerifyVoucherResponse:
        request = pb.VerifyVoucherRequest(voucher=voucher, credential=credential)
        return self._call(lambda t: self.stub.VerifyVoucher(request, timeout=t))

    def balance(self, voucher: str) -> pb.Balance:
        request = pb.GetBalanceRequest(voucher=voucher)
        return self._call(lambda t: self.stub.GetBalance(request, timeout=t))

    def list_claims(
        self, voucher: str = "", from_index: int = 0, limit: int = 0, timeout: float = 60.0
    ) -> list[pb.ClaimRecord]:
        request = pb.ListClaimsRequest(voucher=voucher, from_index=from_index, limit=limit)
        return self._call(lambda t: list(self.stub.ListClaims(request, timeout=t)), timeout)

    def statement(self, statement_id: str, page: int = 1000) -> pb.Statement:
        """A statement with every line: its pages fetched one after another and joined."""
        whole: pb.Statement | None = None
        after = 0
        while True:
            request = pb.GetStatementRequest(
                statement_id=statement_id, after_line=after, max_lines=page
            )
            got: pb.Statement = self._call(self._statement_call(request))
            if whole is None:
                whole = got
            else:
                whole.lines.extend(got.lines)
                whole.line_entries.extend(got.line_entries)
            if not got.next_line:
                whole.next_line = 0
                return whole
            after = got.next_line

    def _statement_call(self, request: pb.GetStatementRequest) -> Callable[[float], pb.Statement]:
        return lambda timeout: self.stub.GetStatement(request, timeout=timeout)

    def statements(self, period: str = "") -> list[pb.Statement]:
        request = pb.ListStatementsRequest(period=period)
        return list(self._call(lambda t: self.stub.ListStatements(request, timeout=t)).statements)

    # --- signed writes ---------------------------------------------------------------------

    def claim(self, usage: UsageRecord, voucher: str, cost_fen: int) -> pb.ClaimResult:
        body = claim_body(usage, voucher, cost_fen)
        return self._signed(self.stub.Claim, pb.ClaimRequest, "claim", body)

    def authorize(
        self, hold_id: str, voucher: str, estimated_cost_fen: int, expires_at: datetime | str
    ) -> pb.Hold:
        expires = expires_at if isinstance(expires_at, str) else format_time(expires_at)
        body = pb.HoldBody(
            centre=self.centre,
            hold_id=hold_id,
            voucher=voucher,
            estimated_cost_fen=estimated_cost_fen,
            expires_at=expires,
        )
        return self._signed(self.stub.Authorize, pb.AuthorizeRequest, "hold", body)

    def capture(self, hold_id: str, usage: UsageRecord, cost_fen: int) -> pb.ClaimResult:
        body = pb.CaptureBody(
            centre=usage.centre,
            hold_id=hold_id,
            record_id=usage.record_id,
            resource=usage.resource,
            quantity=usage.quantity,
            start=format_time(usage.start),
            end=format_time(usage.end),
            cost_fen=cost_fen,
        )
        return self._signed(self.stub.Capture, pb.CaptureRequest, "capture", body)

    def void(self, hold_id: str) -> pb.VoidResult:
        body = pb.VoidBody(centre=self.centre, hold_id=hold_id)
        return self._signed(self.stub.Void, pb.VoidRequest, "void", body)

    def claim_stream(
        self,
        items: Iterable[ClaimItem],
        *,
        timeout: float = 3600.0,
        window: int = 1024,
        per_message: int = 1,
    ) -> Iterator[StreamResult]:
        """Claim many usage records over one stream; yield one result per item.

        At most ``window`` claims are in flight. With ``per_message`` above 1, a request
        carries up to that many claims (at most ``MAX_CLAIMS_PER_MESSAGE``), each signed on
        its own, and one response answers them all: fewer messages for gRPC to handle. If
        the stream breaks with a transient error, a new stream re-sends (re-signed) every
        claim that has no answer yet, so each item gets exactly one answer; a re-sent claim
        the ledger had already recorded comes back with ``replayed`` set.
        """
        if not 1 <= per_message <= MAX_CLAIMS_PER_MESSAGE:
            raise ValueError(f"per_message must be 1 to {MAX_CLAIMS_PER_MESSAGE}")
        source = iter(items)
        state = _StreamState(window)
        delay = self.backoff
        failures = 0
        while True:
            stop = threading.Event()
            requests = self._stream_requests(source, state, stop, per_message)
            call = self.stub.ClaimStream(requests, timeout=timeout)
            try:
                for response in call:
                    for seq, outcome in _outcomes(response):
                        item = state.acked(seq)
                        if item is None:
                            continue
                        failures, delay = 0, self.backoff
                        yield _stream_result(item, outcome)
                if state.finished():
                    return
                raise RedemptionError(
                    grpc.StatusCode.INTERNAL, "STREAM_INCOMPLETE", "stream ended early", {}
                )
            except grpc.RpcError as error:
                code = error.code() if hasattr(error, "code") else None
                failures += 1
                if code not in RETRYABLE or failures > self.retries:
                    raise RedemptionError.from_rpc(error) from None
            finally:
                stop.set()
                call.cancel()
            time.sleep(random.uniform(0, delay))  # noqa: S311 - jitter, not a secret
            delay = min(delay * 2, self.max_backoff)

    def _stream_requests(
        self,
        source: Iterator[ClaimItem],
        state: _StreamState,
        stop: threading.Event,
        per_message: int,
    ) -> Iterator[pb.ClaimStreamRequest]:
        unanswered = state.resend()
        for start in range(0, len(unanswered), per_message):
            yield self._stream_request(unanswered[start : start + per_message], per_message)
        while not stop.is_set():
            if not state.slot(stop):
                return
            group = state.take(source, per_message, stop)
            if group:
                yield self._stream_request(group, per_message)
            if state.exhausted:
                return

    def _stream_request(
        self, group: list[tuple[int, ClaimItem]], per_message: int
    ) -> pb.ClaimStreamRequest:
        """One request: the single-claim form when claims go one per message."""
        if per_message == 1:
            [(seq, item)] = group
            return pb.ClaimStreamRequest(seq=seq, claim=self._signed_claim(item))
        claims = [pb.StreamClaim(seq=seq, claim=self._signed_claim(item)) for seq, item in group]
        return pb.ClaimStreamRequest(claims=claims)

    def _signed_claim(self, item: ClaimItem) -> pb.ClaimRequest:
        body = claim_body(item.usage, item.voucher, item.cost_fen)
        return pb.ClaimRequest(body=body, **self.sign("claim", body).fields("ClaimRequest"))


def _outcomes(response: pb.ClaimStreamResponse) -> list[tuple[int, Any]]:
    """(seq, the message holding its result or refusal) of each claim a response answers."""
    if response.answers:
        return [(answer.seq, answer) for answer in response.answers]
    return [(response.seq, response)]


def _stream_result(item: ClaimItem, outcome: Any) -> StreamResult:
    if outcome.HasField("result"):
        return StreamResult(item, outcome.result, None)
    return StreamResult(item, None, RedemptionError.from_refusal(outcome.refusal))


class _StreamState:
    """Claims sent and not yet answered, by seq; a window of ``window`` in flight."""

    def __init__(self, window: int) -> None:
        self.lock = threading.Lock()
        self.unacked: OrderedDict[int, ClaimItem] = OrderedDict()
        self.next_seq = 1
        self.exhausted = False
        self._slots = threading.Semaphore(window)

    def slot(self, stop: threading.Event) -> bool:
        while not stop.is_set():
            if self._slots.acquire(timeout=0.1):
                return True
        return False

    def take(
        self, source: Iterator[ClaimItem], most: int, stop: threading.Event
    ) -> list[tuple[int, ClaimItem]]:
        """Up to ``most`` new claims with their seqs, one slot each (the first slot taken
        already); fewer when the window has no room at once or the source runs out.

        ``stop`` is checked under the lock that ``resend`` takes: a broken stream's
        generator can still win a slot its successor freed, and a claim it took after the
        successor listed the unanswered ones would never be sent."""
        group: list[tuple[int, ClaimItem]] = []
        while True:
            with self.lock:
                item = None if stop.is_set() else next(source, None)
                if item is None:
                    self.exhausted = not stop.is_set()
                    self._slots.release()  # the slot taken for this claim
                    return group
                seq = self.next_seq
                self.next_seq += 1
                self.unacked[seq] = item
            group.append((seq, item))
            if len(group) >= most or not self._slots.acquire(blocking=False):
                return group

    def acked(self, seq: int) -> ClaimItem | None:
        with self.lock:
            item = self.unacked.pop(seq, None)
        if item is not None:
            self._slots.release()
        return item

    def resend(self) -> list[tuple[int, ClaimItem]]:
        with self.lock:
            return list(self.unacked.items())

    def finished(self) -> bool:
        with self.lock:
            return self.exhausted and not self.unacked
