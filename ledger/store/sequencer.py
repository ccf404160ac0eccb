"""Group commit: one writer thread turns many concurrent requests into few transactions.

Every append must hold the log's append lock, so concurrent writers would only queue on it
one commit (and one fsync, and one checkpoint signature) at a time. The sequencer instead
drains whatever requests are waiting, applies them in arrival order inside ONE transaction,
signs one checkpoint and commits; only then does it answer each request. Each request runs
in its own savepoint: one that fails — refused by the rules, or by a bug — is rolled back
alone and answered with its error (a bug as ``InternalError`` with an id that the server
log has), and the rest of the batch commits. If the commit itself fails, every request of
the batch gets the error: nothing acknowledged is ever lost, because nothing is
acknowledged before its commit.

Linger: the requests of the previous batch were just answered, and their callers are
probably on their way back (clients in a closed loop, each waiting for its answer before
it sends the next request). So when the previous batch held more than one request, the
sequencer waits up to ``linger`` seconds for as many requests as there were in flight
(those waiting now plus the previous batch), so that they share one commit instead of
splitting into a small batch and another one behind it. A lone caller (previous batch of
one) never waits, so a lightly loaded service answers as fast as without it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ledger.errors import InternalError, LedgerError
from ledger.store.unit_of_work import FoldedLog, Transaction

Work = Callable[[Transaction], Any]
log = logging.getLogger("suanli.sequencer")


@dataclass
class _Request:
    work: Work
    future: Future[Any]


class Sequencer:
    def __init__(self, ledger: FoldedLog, max_batch: int = 500, linger: float = 0.002) -> None:
        self.ledger = ledger
        self.max_batch = max_batch
        self.linger = linger
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="suanli-sequencer", daemon=True)
        self._thread.start()

    def submit(self, work: Work) -> Future[Any]:
        """Run ``work(tx)`` in a future batch; the future resolves after the batch commits."""
        future: Future[Any] = Future()
        self._queue.put(_Request(work, future))
        return future

    def call(self, work: Work, timeout: float | None = None) -> Any:
        return self.submit(work).result(timeout)

    def close(self) -> None:
        """Finish everything already submitted, then stop."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        previous = 1
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = self._drain(batch, self.max_batch, None)
            if not stop and previous > 1 and self.linger > 0:
                want = min(len(batch) + previous, self.max_batch)
                stop = self._drain(batch, want, time.monotonic() + self.linger)
            previous = len(batch)
            self._commit(batch)
            if stop:
                return

    def _drain(self, batch: list[_Request], size: int, until: float | None) -> bool:
        """Add waiting requests to ``batch`` up to ``size``, waiting for more until the
        monotonic time ``until`` (None: take only those already waiting); True on close."""
        while len(batch) < size:
            try:
                if until is None:
                    item = self._queue.get_nowait()
                else:
                    remaining = until - time.monotonic()
                    if remaining <= 0:
                        return False
                    item = self._queue.get(timeout=remaining)
            except queue.Empty:
                return False
            if item is None:
                return True
            batch.append(item)
        return False

    def _commit(self, batch: list[_Request]) -> None:
        outcomes: list[tuple[_Request, bool, Any]] = []
        try:
            with self.ledger.transaction() as tx:
                for request in batch:
                    if request.future.set_running_or_notify_cancel():
                        outcomes.append((request, *_run_alone(request.work, tx)))
        except BaseException as failure:  # the commit failed: nobody's request took effect
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(failure)
            return
        for request, ok, value in outcomes:
            if ok:
                request.future.set_result(value)
            else:
                request.future.set_exception(value)


def _run_alone(work: Work, tx: Transaction) -> tuple[bool, Any]:
    """Run one request in its own savepoint: if it fails, refused or by a bug, it leaves
    nothing behind and the rest of the batch goes on. (ok, result or error)."""
    try:
        with tx.savepoint():
            return True, work(tx)
    except LedgerError as refusal:
        return False, refusal
    except Exception:
        error_id = uuid.uuid4().hex[:16]
        log.exception("request failed by a bug; error id %s (rolled back alone)", error_id)
        return False, InternalError(error_id)
