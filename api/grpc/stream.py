"""ClaimStream: many claims over one call, read and checked while earlier ones wait for their
commit, answered one by one in the order they came in.

Checked claims gather in ``ready`` and go to the sequencer as one chunk (one use-case call,
``redemption.claim_each``, one future) whenever fewer than ``CHUNKS_IN_FLIGHT`` chunks of
this stream are waiting, so the chunk size follows the commit rate. At most ``WINDOW``
claims are unanswered (back-pressure); a refusal at the edge is queued behind the chunks
before it, so that the answers keep the claims' order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

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
_Item = (
    tuple[list[int], "asyncio.Future[list[Answer]]"] | tuple[int, LedgerError] | Unreadable | None
)


class ClaimStream:
    """One ClaimStream call."""

    def __init__(self, redemption: Redemption, centre: str, deadline: float | None) -> None:
        self.redemption = redemption
        self.centre = centre
        self.deadline = deadline
        self.answers: asyncio.Queue[_Item] = asyncio.Queue()
        self.window = asyncio.Semaphore(WINDOW)
        self.ready: list[tuple[int, SignedWrite]] = []
        self.in_flight = 0

    def flush(self, force: bool = False) -> None:
        if not self.ready or (self.in_flight >= CHUNKS_IN_FLIGHT and not force):
            return
        chunk, self.ready = self.ready, []
        future = self.redemption.service.submit(
            redemption.claim_each, self.deadline, [write for _, write in chunk]
        )
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
                    write = self.redemption.prepare("claim", request.claim, self.centre)
                except LedgerError as refusal:
                    self.flush(force=True)  # keep the answers in order
                    self.answers.put_nowait((request.seq, refusal))
                    continue
                self.ready.append((request.seq, write))
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
                    await abort(context, item.error)
                    return
                seqs, outcome = item
                if isinstance(seqs, int):
                    assert isinstance(outcome, LedgerError)
                    self.window.release()
                    yield _answer(seqs, outcome)
                    continue
                assert isinstance(outcome, asyncio.Future)
                for seq, answer in zip(seqs, await _chunk_answers(outcome, len(seqs)), strict=True):
                    self.window.release()
                    yield _answer(seq, answer)
            await reading  # re-raise a failure of the reader
        finally:
            reading.cancel()
            while not self.answers.empty():  # the caller went away: drop what has not started
                left = self.answers.get_nowait()
                if isinstance(left, tuple) and isinstance(left[1], asyncio.Future):
                    left[1].cancel()


async def _chunk_answers(outcome: asyncio.Future[list[Answer]], size: int) -> list[Answer]:
    """A chunk's answers; a chunk refused as a whole (its deadline passed) refuses each."""
    try:
        return await outcome
    except LedgerError as refusal:
        return [refusal] * size


def _answer(seq: int, answer: Answer) -> pb.ClaimStreamResponse:
    if isinstance(answer, LedgerError):
        metrics.REFUSALS.labels(answer.reason).inc()
        return pb.ClaimStreamResponse(seq=seq, refusal=messages.refusal_message(answer))
    metrics.redeemed(answer)
    return pb.ClaimStreamResponse(seq=seq, result=messages.claim_result(answer))
