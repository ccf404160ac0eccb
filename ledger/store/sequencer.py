"""Group commit: one writer thread turns many concurrent requests into few transactions.

Every append must hold the log's append lock, so concurrent writers would only queue on it
one commit (and one fsync, and one checkpoint signature) at a time. The sequencer instead
drains whatever requests are waiting, applies them in arrival order inside ONE transaction,
signs one checkpoint and commits; only then does it answer each request. A request the
rules refuse raises before it changes the state, so it is answered with its error and the
rest of the batch goes on. If the commit fails, every request of the batch gets the error:
nothing acknowledged is ever lost, because nothing is acknowledged before its commit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ledger.errors import LedgerError
from ledger.store.ledger import Ledger, Transaction

Work = Callable[[Transaction], Any]


@dataclass
class _Request:
    work: Work
    future: Future[Any]


class Sequencer:
    def __init__(self, ledger: Ledger, max_batch: int = 500) -> None:
        self.ledger = ledger
        self.max_batch = max_batch
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
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Request]) -> None:
        outcomes: list[tuple[_Request, bool, Any]] = []
        try:
            with self.ledger.transaction() as tx:
                for request in batch:
                    if not request.future.set_running_or_notify_cancel():
                        continue
                    try:
                        outcomes.append((request, True, request.work(tx)))
                    except LedgerError as refusal:
                        outcomes.append((request, False, refusal))
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
