"""ClaimStream: many claims over one call, read and checked while earlier ones wait for their
commit, answered in the order they came in.

A request carries one claim (``seq``, ``claim``: answered by one response with that seq)
or several (``claims``: answered by one response whose ``answers`` follow them). Checked
claims, and the refusals of those the edge refused, gather in ``ready`` in their order; the
claims go to the sequencer as one chunk (one use-case call, ``redemption.claim_each``, one
future) whenever fewer than ``CHUNKS_IN_FLIGHT`` chunks of this stream are waiting, so the
chunk size follows the commit rate and a request's claims go in one submission. At most
``WINDOW`` claims are unanswered (back-pressure).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from suanli.v1 import redemption_pb2 as pb

from api import metrics
from api.grpc import messages
from api.grpc.interceptor import abort
from api.grpc.messages import Unreadable
from ledger.errors import LedgerError
from ledger.usecases.commands import redemption
from ledger.usecases.commands.redemption import Redeemed, SignedWrite

if TYPE_CHECKING:
    from api.grpc.servicer import Redemption

WINDOW = 4096  # claims of one ClaimStream unanswered at once
CHUNKS_IN_FLIGHT = 2  # chunks of one ClaimStream waiting for the sequencer

Answer = Redeemed | LedgerError
_Chunk = list[tuple[int, SignedWrite | LedgerError]]  # (seq, the claim or its edge refusal)
_Item = tuple[_Chunk, "asyncio.Future[list[Answer]] | None"] | Unreadable | None


class ClaimStream:
    """One ClaimStream call."""

    def __init__(self, redemption: Redemption, centre: str, deadline: float | None) -> None:
        self.redemption = redemption
        self.centre = centre
        self.deadline = deadline
        self.answers: asyncio.Queue[_Item] = asyncio.Queue()
        self.window = asyncio.Semaphore(WINDOW)
        self.ready: _Chunk = []
        self.in_flight = 0
        self.replies = _Replies()

    def flush(self, force: bool = False) -> None:
        if not self.ready or (self.in_flight >= CHUNKS_IN_FLIGHT and not force):
            return
        chunk, self.ready = self.ready, []
        writes = [write for _, write in chunk if isinstance(write, SignedWrite)]
        if not writes:  # only refusals: nothing for the sequencer
            self.answers.put_nowait((chunk, None))
            return
        future = self.redemption.service.submit(redemption.claim_each, self.deadline, writes)
        self.in_flight += 1
        wrapped = asyncio.wrap_future(future)
        wrapped.add_done_callback(self._chunk_done)
        self.answers.put_nowait((chunk, wrapped))

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
                if request.claims:
                    self.replies.expect(len(request.claims))
                    claims = [(claim.seq, claim.claim) for claim in request.claims]
                else:
                    self.replies.expect(None)
                    claims = [(request.seq, request.claim)]
                for seq, claim in claims:
                    await self.window.acquire()
                    self.ready.append((seq, self._prepared(claim)))
                self.flush()
        finally:
            self.flush(force=True)
            self.answers.put_nowait(None)

    def _prepared(self, claim: pb.ClaimRequest) -> SignedWrite | LedgerError:
        """The claim checked at the edge, or its refusal (answered in its place)."""
        try:
            return self.redemption.prepare("claim", claim, self.centre)
        except LedgerError as refusal:
            return refusal

    async def run(
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ClaimStreamResponse]:
        reading = asyncio.create_task(self.read(requests))
        try:
            while (item := await self.answers.get()) is not None:
                if isinstance(item, Unreadable):
                    await abort(context, item.error)
                    return
                chunk, outcome = item
                decided = iter(await _chunk_answers(outcome, len(chunk)))
                for seq, prepared in chunk:
                    answer = prepared if isinstance(prepared, LedgerError) else next(decided)
                    self.window.release()
                    response = self.replies.add(seq, answer)
                    if response is not None:
                        yield response
            await reading  # re-raise a failure of the reader
        finally:
            reading.cancel()
            while not self.answers.empty():  # the caller went away: drop what has not started
                left = self.answers.get_nowait()
                if isinstance(left, tuple) and left[1] is not None:
                    left[1].cancel()


class _Replies:
    """The answers of the claims, in order, gathered into one response per request."""

    def __init__(self) -> None:
        self.shapes: deque[int | None] = deque()  # per request: None (one claim) or its count
        self.gathered: list[pb.StreamAnswer] = []

    def expect(self, count: int | None) -> None:
        self.shapes.append(count)

    def add(self, seq: int, answer: Answer) -> pb.ClaimStreamResponse | None:
        """The response this answer completes, if it completes one."""
        count = self.shapes[0]
        if count is None:
            self.shapes.popleft()
            return _answer(pb.ClaimStreamResponse(seq=seq), answer)
        self.gathered.append(_answer(pb.StreamAnswer(seq=seq), answer))
        if len(self.gathered) < count:
            return None
        self.shapes.popleft()
        response = pb.ClaimStreamResponse(answers=self.gathered)
        self.gathered = []
        return response


async def _chunk_answers(outcome: asyncio.Future[list[Answer]] | None, size: int) -> list[Answer]:
    """A chunk's answers; a chunk refused as a whole (its deadline passed) refuses each."""
    if outcome is None:
        return []
    try:
        return await outcome
    except LedgerError as refusal:
        return [refusal] * size


_Message = TypeVar("_Message", pb.ClaimStreamResponse, pb.StreamAnswer)


def _answer(message: _Message, answer: Answer) -> _Message:
    """``message`` (its seq set) with the answer's outcome."""
    if isinstance(answer, LedgerError):
        metrics.REFUSALS.labels(answer.reason).inc()
        message.refusal.CopyFrom(messages.refusal_message(answer))
    else:
        metrics.redeemed(answer)
        messages.claim_result(answer, message.result)
    return message
