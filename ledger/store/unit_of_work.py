"""The ledger service's unit of work: the fold's state in memory, the log in the database.

State is a fold of the log (``ledger.fold``), and a state never changes once made
(``ledger.state``). A write transaction takes the append lock, folds in whatever other
processes have appended since the last commit, and decides each entry with ``apply`` on
that up-to-date state, so caps hold across processes without row locks: the append lock is
the only writer gate. The transaction's state is a new value; only after the commit is it
published as the committed snapshot.

* **A request fails alone.** :meth:`Transaction.savepoint` marks the working state and the
  rows staged so far; a request that raises, refused or by a bug, goes back to the mark
  and the requests before and after it in the same transaction commit as if it had never
  been there. Nothing is ever replayed to undo it.
* **Reads never wait for writes.** :meth:`FoldedLog.snapshot` returns the committed state:
  an immutable value that no writer touches, read without any lock. Each snapshot knows
  its size, which every answer built from it can state.
* A failed commit leaves the committed snapshot as it was: nothing of it was published.
"""

from __future__ import annotations

import dataclasses
import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.entry import Entry
from ledger.errors import LedgerError
from ledger.fold import apply
from ledger.keys import ServiceKeys, Signer, Verifier
from ledger.publication import concealed
from ledger.state import LedgerState
from ledger.store.log import LogStore, LogWriter, Staged
from ledger.store.snapshots import SnapshotKeeper, load_latest
from ledger.timeutil import format_time
from ledger.usecases.unit_of_work import Appended, decide, erased_by_entry

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Batch:
    """What one write transaction appended, in order."""

    appended: list[Appended] = field(default_factory=list)


@dataclass(frozen=True)
class _Mark:
    state: LedgerState
    staged: Staged
    appended: int


class Transaction:
    """One write transaction: entries decided on its own working state, staged, committed
    together with one checkpoint (the unit of work)."""

    def __init__(self, ledger: FoldedLog, writer: LogWriter, state: LedgerState) -> None:
        self.ledger = ledger
        self.writer = writer
        self.state = state  # the working state: the committed snapshot plus what is staged
        self.batch = Batch()
        # Entries this transaction signed itself with the service's keys: their signatures
        # are right by construction and need no verification (other entries get it).
        self._signed_here: dict[int, Entry] = {}

    @property
    def keys(self) -> ServiceKeys:
        return self.ledger.keys

    @property
    def next_index(self) -> int:
        return self.writer.size

    def now(self) -> str:
        return format_time(self.ledger.clock())

    def clock_now(self) -> datetime:
        return self.ledger.clock()

    def append(self, entry: Entry, *, signatures_checked: bool = False) -> Appended:
        """Decide ``entry`` on the working state (``ledger.usecases.unit_of_work.decide``:
        signatures, the ledger's time, the fold; raising if the rules refuse it) and stage it.
        ``signatures_checked``: the caller has already verified them against this state's
        key registry (the gRPC edge does, off the writer thread). A refusal changes nothing:
        the new state and the row are taken only once everything has passed."""
        signed_here = self._signed_here.pop(id(entry), None) is entry
        entry, state, result = decide(
            self.state,
            entry,
            self.writer.size,
            self.now(),
            signed_here=signed_here,
            checked=signatures_checked,
        )
        self.writer.append(entry.to_bytes(), entry.disclosures)
        self.state = state
        done = Appended(self.writer.size - 1, entry, result)
        self.writer.erase(erased_by_entry(done), done.index)
        self.batch.appended.append(done)
        return done

    def sign(self, kind: str, body: dict[str, Any], *signers: Signer) -> Entry:
        """A new entry of ``kind`` at the service clock's time, signed by ``signers``."""
        entry = concealed(kind, self.now(), body).signed(*signers)
        self._signed_here[id(entry)] = entry
        return entry

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """All or nothing: if the block raises, the working state, the staged rows and the
        batch go back to what they were when it began, and the exception goes on."""
        mark = _Mark(self.state, self.writer.mark(), len(self.batch.appended))
        try:
            yield
        except BaseException:
            self.state = mark.state
            self.writer.rollback_to(mark.staged)
            del self.batch.appended[mark.appended :]
            raise


class FoldedLog:
    """The log in the database and its fold in memory: the committed snapshot for readers,
    transactions (units of work) for writers."""

    def __init__(
        self, store: LogStore, keys: ServiceKeys, origin: str, clock: Clock = system_clock
    ) -> None:
        self.store = store
        self.keys = keys
        self.origin = origin
        self.clock = clock
        self._committed = LedgerState()
        self._write_lock = threading.Lock()  # one write transaction at a time in a process
        self._catch_up_lock = threading.Lock()  # one reader folds in others' entries at a time
        self._publish_lock = threading.Lock()
        self._started = False
        self.on_commit: list[Callable[[Batch], None]] = []
        self.key_loader: Callable[[], ServiceKeys] | None = None

    def close(self) -> None:
        self.store.engine.dispose()

    # --- reading -------------------------------------------------------------------------

    @property
    def state(self) -> LedgerState:
        """The committed snapshot as this process last saw it (no database read)."""
        return self._committed

    def snapshot(self) -> LedgerState:
        """The committed log's state, with whatever other processes appended folded in.

        Never waits for a writer: the snapshot is an immutable value; a reader folds in only
        entries that are already committed, beside any transaction that is running.
        """
        self._catch_up()
        return self._committed

    @contextmanager
    def reading(self) -> Iterator[LedgerState]:
        """``with log.reading() as state``: :meth:`snapshot` for a block of reads."""
        yield self.snapshot()

    def refresh(self) -> LedgerState:
        return self.snapshot()

    def _start(self) -> None:
        """Begin from the newest fold snapshot that verifies, if there is one, so that
        only the tail of the log is replayed (``ledger.store.snapshots``)."""
        with self._catch_up_lock:
            if self._started:
                return
            self._started = True
            if self._committed.size == 0:
                loaded = load_latest(
                    self.store.engine, self.origin, self._own_log_key, self.store.size()
                )
                if loaded is not None:
                    self._publish(loaded)

    def _own_log_key(self, key_id: str) -> Verifier | None:
        signer = self.keys.log_key(key_id)
        return None if signer is None else signer.verifier

    def start_snapshots(self, every: int, interval: float = 10.0) -> SnapshotKeeper:
        """Snapshot the fold every ``every`` entries in the background (and on stop)."""
        self._start()
        return SnapshotKeeper(
            self.store.engine,
            self.origin,
            lambda: self._committed,
            lambda size: self.log_signer_for(size, self._committed),
            every,
            interval,
        )

    def _catch_up(self) -> None:
        if not self._started:
            self._start()
        if self._write_lock.locked():
            return  # this process is writing: its commit folds in others' entries and publishes
        if self.store.size() <= self._committed.size:
            return
        with self._catch_up_lock:
            state = self._committed
            for entry in self.store.replay(state.size):
                state, _ = apply(state, entry)
                if state.size % 4096 == 0:
                    gc.freeze()  # the fold only grows: keep it out of the collector's passes
            self._publish(state)

    def _publish(self, state: LedgerState) -> None:
        """Make ``state`` the committed snapshot, unless a larger one is already there (a
        reader's catch-up and this process's commit may both reach the same size)."""
        with self._publish_lock:
            if state.size >= self._committed.size:
                self._committed = state

    def save_projection(self) -> int:
        """Store the live fold's summary (``ledger.projection``) at its size; returns it."""
        from ledger.projection import summary
        from ledger.store.log import save_projection

        state = self.snapshot()
        save_projection(self.store.engine, state.size, summary(state))
        return state.size

    # --- writing -------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Hold the append lock, catch up, and commit everything staged with one checkpoint.

        If the block raises, nothing is committed and the committed snapshot stays as it
        was; to keep some requests when another fails, run each in ``tx.savepoint()``.
        """
        if not self._started:
            self._start()
        with self._write_lock, self.store.writer() as writer:
            state = self._committed
            for entry in writer.committed_since(state.size):
                state, _ = apply(state, entry)
            tx = Transaction(self, writer, state)
            yield tx
            if tx.batch.appended:
                writer.flush(self._checkpoint(tx))
        self._publish(tx.state)
        if tx.batch.appended:
            for hook in self.on_commit:
                hook(tx.batch)

    def _checkpoint(self, tx: Transaction) -> str:
        size = tx.writer.size
        signer = self.log_signer_for(size, tx.state)
        return sign_checkpoint(Checkpoint(self.origin, size, tx.writer.root()), signer)

    def log_signer_for(self, size: int, state: LedgerState | None = None) -> Signer:
        """The log key the registry puts in force for a checkpoint of ``size``.

        After ``suanli keys rotate-log`` (perhaps run by another process) the key may be
        new to this process: the key loader is asked once more before giving up.
        """
        want = (state or self._committed).registry.log_key_for_size(size)
        signer = self.keys.log_key(want.key_id)
        if signer is None and self.key_loader is not None:
            self.keys = self.key_loader()
            signer = self.keys.log_key(want.key_id)
        if signer is None:
            raise LedgerError(
                f"the log key in force at size {size} is {want.key_id}, "
                f"but this service holds {self.keys.log.key_id}",
                reason="WRONG_LOG_KEY",
            )
        return signer

    def rotate_log_key(self, new: Signer) -> Appended:
        """Hand the log over to ``new``: a ``log.rotate`` entry signed by the current key
        and the new one; the new key signs this commit's checkpoint and every later one."""
        self.keys = dataclasses.replace(self.keys, log_ring={**self.keys.log_ring, new.key_id: new})
        with self.transaction() as tx:
            old = self.log_signer_for(tx.state.size, tx.state)
            return tx.append(tx.sign("log.rotate", {"new_key": new.verifier.vkey}, old, new))

    def submit(self, entry: Entry) -> Appended:
        """Append one entry in its own transaction."""
        with self.transaction() as tx:
            return tx.append(entry)
