"""The handlers of ``suanli.v1.Redemption``: parse, authenticate, call one use case, answer.

A signed write goes through these steps, each of which can refuse it (and a refusal
writes nothing):

1. **Size and shape** (``api.grpc.messages``): too large, not protobuf, integers outside
   the JSON-safe range, no centre in the body.
2. **Who is calling** (``api.grpc.interceptor``): the centre of the client certificate;
   the body must be for that centre (``CERTIFICATE_MISMATCH``).
3. **The signature, early.** On the event loop, off the writer thread, the Ed25519
   signature is checked against the log's key registry with the one shared function
   (``ledger.registry.verify_entry_signatures``): a bad one is refused at once
   (``BAD_SIGNATURE``) and the writer does not check it again. A key the registry does not
   know yet is left to the writer, which checks its signature after catching up.
4. **The use case** (``ledger.usecases.commands.redemption``), in the group-commit
   sequencer's next batch: the signed time against the service clock (``CLOCK_SKEW``),
   exactly-once retries, and the fold's rules for everything else. A call whose deadline
   passed while it waited is dropped before it reaches the ledger.

Reads run on a pool of reader threads against the committed state
(``api.bootstrap.Service.reading``) and call the centre's views
(``ledger.usecases.views.centres``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from suanli.v1 import redemption_pb2 as pb

from api import metrics
from api.bootstrap import Service
from api.errors import DeadlinePassed
from api.grpc import messages
from api.grpc.interceptor import abort, current_centre
from api.grpc.messages import Unreadable, reader, stream_reader
from api.grpc.stream import ClaimStream
from ledger.errors import LedgerError
from ledger.registry import verify_entry_signatures
from ledger.usecases import Snapshot
from ledger.usecases.commands import redemption
from ledger.usecases.commands.redemption import Redeemed, SignedWrite
from ledger.usecases.views import centres, statements

_T = TypeVar("_T")


def deadline_of(context: grpc.aio.ServicerContext[Any, Any]) -> float | None:
    """The call's deadline on time.monotonic(); refuse at once if it has already passed."""
    remaining: float | None = context.time_remaining()
    if remaining is None:
        return None
    if remaining <= 0:
        raise DeadlinePassed("the call's deadline had passed when it arrived")
    return time.monotonic() + remaining


class Redemption:
    """The handlers of ``suanli.v1.Redemption`` (async, on the server's event loop)."""

    def __init__(
        self, service: Service, readers: ThreadPoolExecutor, skew_seconds: float | None = None
    ) -> None:
        self.service = service
        self.readers = readers
        self.skew = float(
            service.settings.claim_skew_seconds if skew_seconds is None else skew_seconds
        )

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
                stream_reader(),
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
                deadline = deadline_of(context)
                if isinstance(request, Unreadable):
                    raise request.error
                return await fn(request, current_centre.get(), deadline)
            except LedgerError as error:
                await abort(context, error)
                raise AssertionError("unreachable") from error  # abort() always raises
            finally:
                metrics.RPC_LATENCY.labels(method).observe(time.perf_counter() - started)

        return call

    async def read(self, view: Callable[[Snapshot], _T]) -> _T:
        """``view`` of the committed state, on a reader thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.readers, self._read_committed, view)

    def _read_committed(self, view: Callable[[Snapshot], _T]) -> _T:
        with self.service.reading() as snapshot:
            return view(snapshot)

    def prepare(self, kind: str, request: Any, centre: str) -> SignedWrite:
        """The signed entry of a write, checked at the edge (its signatures verified if
        every signer's key is known to the registry)."""
        entry = messages.signed_entry(kind, request, centre)
        registry = self.service.latest_registry()
        try:
            verify_entry_signatures(registry, entry)
            checked = all(sig.key in registry.keys for sig in entry.sigs)
        except RuntimeError:  # the registry grew while it was read: leave it to the writer
            checked = False
        return SignedWrite(entry, self.skew, checked)

    async def redeem(self, kind: str, request: Any, centre: str, deadline: float | None) -> Any:
        """A signed write through its use case; the use case's answer once committed."""
        write = self.prepare(kind, request, centre)
        future = self.service.submit(redemption.REDEEM[kind], deadline, write)
        outcome = await asyncio.wrap_future(future)
        metrics.redeemed(outcome)
        return outcome

    # -- signed writes --

    async def claim(self, request: pb.ClaimRequest, centre: str, deadline: float | None) -> Any:
        return messages.claim_result(await self.redeem("claim", request, centre, deadline))

    async def capture(self, request: pb.CaptureRequest, centre: str, deadline: float | None) -> Any:
        return messages.claim_result(await self.redeem("capture", request, centre, deadline))

    async def authorize(
        self, request: pb.AuthorizeRequest, centre: str, deadline: float | None
    ) -> Any:
        return messages.hold_message(await self.redeem("hold", request, centre, deadline))

    async def void(self, request: pb.VoidRequest, centre: str, deadline: float | None) -> Any:
        return messages.void_message(await self.redeem("void", request, centre, deadline))

    async def claim_stream(
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ClaimStreamResponse]:
        """One answer per claim, in the order the claims came in (``api.grpc.stream``)."""
        stream = ClaimStream(self, current_centre.get(), deadline_of(context))
        async for answer in stream.run(requests, context):
            yield answer

    # -- reads --

    async def verify_voucher(
        self, request: pb.VerifyVoucherRequest, centre: str, deadline: float | None
    ) -> Any:
        def answer(snapshot: Snapshot) -> pb.VerifyVoucherResponse:
            view = centres.voucher_check(snapshot.state, request.voucher, centre, snapshot.now)
            message = messages.voucher_message(view)
            if request.credential:
                centres.verify_credential(snapshot.state, request.voucher, request.credential)
                message.credential_checked = True
            return message

        return await self.read(answer)

    async def get_balance(
        self, request: pb.GetBalanceRequest, centre: str, deadline: float | None
    ) -> Any:
        def answer(snapshot: Snapshot) -> pb.Balance:
            view = centres.balance(snapshot.state, request.voucher, centre, snapshot.now)
            return messages.balance_message(view)

        return await self.read(answer)

    async def list_claims(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ClaimRecord]:
        if isinstance(request, Unreadable):
            await abort(context, request.error)
            return
        centre = current_centre.get()

        def answer(snapshot: Snapshot) -> list[Redeemed]:
            return centres.centre_claims(
                snapshot.state,
                centre,
                voucher=request.voucher,
                from_index=request.from_index,
                limit=request.limit,
            )

        for outcome in await self.read(answer):
            yield messages.claim_record(outcome)

    async def get_statement(
        self, request: pb.GetStatementRequest, centre: str, deadline: float | None
    ) -> Any:
        """A settlement statement of the calling centre with one page of its lines, its
        totals and the signed entries (open, the page's parts, close); another centre's is
        NOT_FOUND like a missing one."""
        store = self.service.ledger.store

        def entry(index: int | None) -> bytes:
            return b"" if index is None else store.entries(index, index + 1)[0]

        def bodies(indices: Sequence[int]) -> dict[int, Mapping[str, Any]]:
            return {i: json.loads(entry(i)) for i in indices}

        def answer(snapshot: Snapshot) -> pb.Statement:
            found = centres.centre_statement(snapshot.state, centre, request.statement_id)
            page = statements.statement_lines(
                snapshot.state,
                found.id,
                bodies,
                after=request.after_line,
                limit=request.max_lines or 1000,
            )
            message = messages.statement_message(found, full=True, page=page)
            message.open_entry = entry(found.index)
            message.entry = entry(found.closed_index)
            message.line_entries.extend(entry(i) for i in page["entries"])
            return message

        return await self.read(answer)

    async def list_statements(
        self, request: pb.ListStatementsRequest, centre: str, deadline: float | None
    ) -> Any:
        """The calling centre's statements in log order (optionally of one period), without
        their lines: GetStatement has those."""

        def answer(snapshot: Snapshot) -> pb.ListStatementsResponse:
            listed = centres.centre_statements(snapshot.state, centre, request.period)
            return pb.ListStatementsResponse(
                statements=[messages.statement_message(s, full=False) for s in listed]
            )

        return await self.read(answer)
