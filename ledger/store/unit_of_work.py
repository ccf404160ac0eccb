"""The ledger service's unit of work: fold state in memory, log in the database.

State is a fold of the log (``ledger.state``). Each process keeps the fold in memory and,
before deciding anything, takes the append lock and applies whatever other processes have
appended since (``_catch_up``). A decision is made by ``apply`` on that up-to-date state,
so caps hold across processes without row locks: the append lock is the only writer gate.
A refused entry raises before it changes the state, so nothing is written for it. If the
transaction fails after entries were applied in memory, the in-memory state is thrown away
and rebuilt from the log, which is the truth.
"""

from __future__ import annotations

import dataclasses
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
from ledger.keys import Signer
from ledger.registry import verify_entry_signatures
from ledger.state import LedgerState, Result
from ledger.store.log import LogStore, LogWriter
from ledger.timeutil import format_time

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ServiceKeys:
    """The private keys the service holds: the log key signs checkpoints and the key
    registry, the issuer key signs the bureau's decisions and vouchers, the service key
    signs what the service records on behalf of signed-in users."""

    log: Signer
    issuer: Signer
    service: Signer
    log_ring: dict[str, Signer] = field(default_factory=dict)
    """Every log key this service holds, current and past and staged, by key id."""

    def log_key(self, key_id: str) -> Signer | None:
        return self.log if key_id == self.log.key_id else self.log_ring.get(key_id)


@dataclass
class Appended:
    index: int
    entry: Entry
    result: Result


@dataclass
class Batch:
    """What one write transaction appended, in order."""

    appended: list[Appended] = field(default_factory=list)


class Transaction:
    def __init__(self, ledger: FoldedLog, writer: LogWriter) -> None:
        self.ledger = ledger
        self.writer = writer
        self.batch = Batch()
        # Entries this transaction signed itself with the service's keys: their signatures
        # are right by construction and need no verification (other entries get it).
        self._signed_here: dict[int, Entry] = {}

    @property
    def state(self) -> LedgerState:
        return self.ledger.state

    @property
    def next_index(self) -> int:
        return self.writer.size

    def now(self) -> str:
        return format_time(self.ledger.clock())

    def append(self, entry: Entry, *, signatures_checked: bool = False) -> Appended:
        """Check ``entry``'s signatures, apply it to the state (raising if the rules refuse
        it) and stage it. ``signatures_checked``: the caller has already verified them
        against this state's key registry (the gRPC edge does, off the writer thread)."""
        if not signatures_checked and self._signed_here.pop(id(entry), None) is not entry:
            verify_entry_signatures(self.ledger.state.registry, entry)
        leaf = entry.to_bytes()
        self.ledger.state, result = apply(self.ledger.state, entry, self.writer.size)
        self.ledger.dirty = True  # state now differs from the committed log until commit
        self.writer.append(leaf)
        done = Appended(self.writer.size - 1, entry, result)
        self.batch.appended.append(done)
        return done

    def sign(self, kind: str, body: dict[str, Any], *signers: Signer) -> Entry:
        """A new entry of ``kind`` at the service clock's time, signed by ``signers``."""
        entry = Entry(kind, self.now(), body).signed(*signers)
        self._signed_here[id(entry)] = entry
        return entry


class FoldedLog:
    def __init__(
        self, store: LogStore, keys: ServiceKeys, origin: str, clock: Clock = system_clock
    ) -> None:
        self.store = store
        self.keys = keys
        self.origin = origin
        self.clock = clock
        self.state = LedgerState()
        self.dirty = False
        self._lock = threading.RLock()
        self.on_commit: list[Callable[[Batch], None]] = []
        self.key_loader: Callable[[], ServiceKeys] | None = None
        self._writing = False  # a transaction is open (its thread holds the lock)

    def close(self) -> None:
        self.store.engine.dispose()

    # --- state ---------------------------------------------------------------------------

    def _reload(self) -> None:
        self.state = LedgerState()
        self.dirty = False
        self._catch_up_from(self.store.iter_entries(0))

    def _catch_up_from(self, entries: Iterator[tuple[int, bytes]]) -> None:
        for index, data in entries:
            self.state, _ = apply(self.state, Entry.from_bytes(data), index)

    @contextmanager
    def reading(self) -> Iterator[LedgerState]:
        """The fold exactly at the committed log, held still while the caller reads it.

        Writers hold the same lock for a whole transaction, so a reader never sees entries
        of a batch that might still roll back.
        """
        with self._lock:
            yield self.refresh()

    def save_projection(self) -> int:
        """Store the live fold's summary (``ledger.projection``) at its size; returns it."""
        from ledger.projection import summary
        from ledger.store.log import save_projection

        with self.reading() as state:
            size, values = state.size, summary(state)
        save_projection(self.store.engine, size, values)
        return size

    def refresh(self) -> LedgerState:
        """Bring the in-memory fold up to the committed log (for readers).

        Inside a transaction (same thread: the lock is re-entrant) the state already holds
        the catch-up and this transaction's own entries, and is returned as it is."""
        with self._lock:
            if self._writing:
                return self.state
            if self.dirty:
                self._reload()
            self._catch_up_from(self.store.iter_entries(self.state.size))
            return self.state

    # --- writes --------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Hold the append lock, catch up, and commit everything appended with one checkpoint."""
        with self._lock:
            if self.dirty:
                self._reload()
            try:
                with self.store.writer() as writer:
                    self._catch_up_from(iter(writer.committed_since(self.state.size)))
                    tx = Transaction(self, writer)
                    self._writing = True
                    try:
                        yield tx
                    finally:
                        self._writing = False
                    if tx.batch.appended:
                        writer.flush(self._checkpoint(writer))
            except BaseException:
                if self.dirty:
                    self._reload()
                raise
            self.dirty = False
        if tx.batch.appended:
            for hook in self.on_commit:
                hook(tx.batch)

    def _checkpoint(self, writer: LogWriter) -> str:
        signer = self.log_signer_for(writer.size)
        return sign_checkpoint(Checkpoint(self.origin, writer.size, writer.root()), signer)

    def log_signer_for(self, size: int) -> Signer:
        """The log key the registry puts in force for a checkpoint of ``size``.

        After ``suanli keys rotate-log`` (perhaps run by another process) the key may be
        new to this process: the key loader is asked once more before giving up.
        """
        want = self.state.registry.log_key_for_size(size)
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
        old = self.log_signer_for(self.state.size)
        self.keys = dataclasses.replace(self.keys, log_ring={**self.keys.log_ring, new.key_id: new})
        with self.transaction() as tx:
            return tx.append(tx.sign("log.rotate", {"new_key": new.verifier.vkey}, old, new))

    def submit(self, entry: Entry) -> Appended:
        """Append one entry in its own transaction."""
        with self.transaction() as tx:
            return tx.append(entry)
