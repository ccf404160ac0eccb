"""Fold snapshots: a restart loads the state at a recent size and replays only the tail.

Replaying 10^7 entries takes minutes; a snapshot of the fold (the immutable ``LedgerState``
at some size) is taken in the background, beside traffic, because a committed state never
changes. A snapshot is stored as:

* a header: ``size``, the tree's ``root`` at that size, the SHA-256 of the state's bytes,
  the SHA-256 of the state's money summary (``ledger.projection.summary``, canonical JSON),
  and the log key's Ed25519 signature over all of these (:func:`snapshot_message`);
* the state's bytes (a Python pickle, zlib-compressed), in chunks; the SHA-256 is of these
  stored bytes.

**Loading** checks, before anything is unpickled, that the signature is by a log key this
service holds and that the root is the stored tree's root at that size: bytes written to the
database by anyone without the log key are never loaded. Pickle is for the service's own
state only; auditors never load it.

**Auditing**: ``suanli audit verify`` replays from entry 0 and, at each snapshot's size,
checks the header's root against its own tree, the signature against the log key in force
there, and the summary digest against its own replay's summary; a snapshot that differs
from the replay fails the audit, naming its size.

The two newest snapshots are kept; older ones are deleted (snapshots are not the log).
A snapshot taken between an application's entries and their erasure (``ledger.erasure``)
holds values the erasure deleted: the erasure deletes it, and one stored concurrently with
it is never loaded and is dropped by the next save.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import pickle
import threading
import zlib
from collections.abc import Callable, Iterator

from sqlalchemy import Connection, Engine, delete, insert, select

from ledger import merkle
from ledger.errors import LedgerError, VerificationError
from ledger.keys import Signer, Verifier
from ledger.snapshot import SnapshotHeader, holds_every_part, snapshot_message, summary_digest
from ledger.state import LedgerState
from ledger.store.log import erasures_before
from ledger.store.schema import snapshot_chunks, snapshots

log = logging.getLogger("suanli.snapshots")

_PICKLE = b"\x80"  # a pickle's first byte (snapshots stored before compression); zlib's is 0x78
CHUNK = 8 << 20  # 8 MiB a row: well inside every backend's limit for one value
KEEP = 2


def _root_at(engine: Engine, size: int) -> bytes:
    def read(ids: list[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
        from ledger.store.log import _read_nodes

        with engine.connect() as conn:
            return _read_nodes(conn, ids)

    ids = merkle.CompactRange.node_ids(size)
    nodes = read(ids)
    return merkle.CompactRange(size, [nodes[i] for i in ids]).root()


def _compressed_pickle(state: LedgerState) -> bytes:
    # zlib at level 1: a third of the bytes (the database keeps two snapshots), off the GIL
    return zlib.compress(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), 1)


def pickled(state: LedgerState) -> bytes:
    """``state``'s compressed pickle, made in a forked child process where ``os.fork``
    exists: pickling a 10^6-claim state holds the interpreter for ~30 s, in which the
    serving threads stalled for up to 2 s at a time; the child has a copy-on-write image of
    the (immutable) state and only pickles, compresses and writes the bytes to a pipe — no
    lock, log, thread or connection of the parent is used there. The parent reads the pipe
    (off the GIL) and stores the bytes as before."""
    if not hasattr(os, "fork"):
        return _compressed_pickle(state)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, which never returns
        status = 1
        try:
            gc.disable()  # a collection here could finalise the parent's connections' objects
            os.close(read_end)
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(_compressed_pickle(state))
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"the snapshot's child process failed (exit status {code})")
    return data


def save_snapshot(
    engine: Engine, origin: str, state: LedgerState, signer: Signer
) -> SnapshotHeader:
    """Store ``state`` (committed, so it never changes while this runs) as a snapshot."""
    data = pickled(state)
    root = _root_at(engine, state.size)
    state_sha = hashlib.sha256(data).hexdigest()
    summary_sha = summary_digest(state)
    message = snapshot_message(origin, state.size, root, state_sha, summary_sha)
    header = SnapshotHeader(
        state.size, root, state_sha, summary_sha, signer.key_id, signer.sign(message)
    )
    with engine.begin() as conn:
        conn.execute(delete(snapshot_chunks).where(snapshot_chunks.c.size == state.size))
        conn.execute(delete(snapshots).where(snapshots.c.size == state.size))
        conn.execute(
            insert(snapshots),
            [
                {
                    "size": header.size,
                    "root": header.root,
                    "state_sha256": header.state_sha256,
                    "summary_sha256": header.summary_sha256,
                    "key_id": header.key_id,
                    "signature": header.signature,
                    "bytes": len(data),
                }
            ],
        )
        for seq, start in enumerate(range(0, len(data), CHUNK)):
            conn.execute(
                insert(snapshot_chunks),
                [{"size": header.size, "seq": seq, "data": data[start : start + CHUNK]}],
            )
        stored = [
            int(r[0])
            for r in conn.execute(select(snapshots.c.size).order_by(snapshots.c.size.desc()))
        ]
        held = _holding_erased(conn, stored)  # an erasure committed while this one was made
        kept = [size for size in stored if size not in held][:KEEP]
        conn.execute(delete(snapshot_chunks).where(snapshot_chunks.c.size.not_in(kept)))
        conn.execute(delete(snapshots).where(snapshots.c.size.not_in(kept)))
    return header


def _holding_erased(conn: Connection, sizes: list[int]) -> set[int]:
    """The sizes whose states were taken between an application's entries and their
    erasure (``ledger.erasure``): they hold values the log's erasure deleted."""
    if not sizes:
        return set()
    erased = erasures_before(conn, max(sizes))
    return {s for s in sizes if any(i < s <= by for i, by in erased.items())}


def headers(engine: Engine) -> list[SnapshotHeader]:
    """Every stored snapshot's header, smallest size first."""
    with engine.connect() as conn:
        rows = conn.execute(select(snapshots).order_by(snapshots.c.size)).mappings().all()
    return [
        SnapshotHeader(
            int(r["size"]),
            bytes(r["root"]),
            str(r["state_sha256"]),
            str(r["summary_sha256"]),
            str(r["key_id"]),
            bytes(r["signature"]),
        )
        for r in rows
    ]


def _chunks(engine: Engine, size: int) -> Iterator[bytes]:
    with engine.connect() as conn:
        seqs = [
            int(r[0])
            for r in conn.execute(
                select(snapshot_chunks.c.seq)
                .where(snapshot_chunks.c.size == size)
                .order_by(snapshot_chunks.c.seq)
            )
        ]
        for seq in seqs:
            row = conn.execute(
                select(snapshot_chunks.c.data).where(
                    snapshot_chunks.c.size == size, snapshot_chunks.c.seq == seq
                )
            ).scalar_one()
            yield bytes(row)


def load_latest(
    engine: Engine, origin: str, verifiers: Callable[[str], Verifier | None], max_size: int
) -> LedgerState | None:
    """The newest snapshot at most ``max_size`` that verifies; None if there is none.

    ``verifiers`` maps a key id to a log key this service trusts (its own). A snapshot that
    fails a check is skipped with a warning (the next older one, or a full replay, is used):
    a bad snapshot costs time, never correctness.
    """
    known = headers(engine)
    with engine.connect() as conn:
        held = _holding_erased(conn, [h.size for h in known])
    for header in reversed(known):
        if header.size > max_size or header.size in held:
            continue
        try:
            return _load(engine, origin, header, verifiers)
        except LedgerError as why:
            log.warning("fold snapshot at size %d not used: %s", header.size, why.message)
    return None


def _load(
    engine: Engine,
    origin: str,
    header: SnapshotHeader,
    verifiers: Callable[[str], Verifier | None],
) -> LedgerState:
    verifier = verifiers(header.key_id)
    if verifier is None:
        raise VerificationError(f"signed by {header.key_id}, not a log key of this service")
    verifier.verify(header.message(origin), header.signature)
    if _root_at(engine, header.size) != header.root:
        raise VerificationError("its root is not the log's root at its size")
    data = b"".join(_chunks(engine, header.size))
    if hashlib.sha256(data).hexdigest() != header.state_sha256:
        raise VerificationError("its bytes are not the ones signed")
    # Unpickling makes millions of objects that all live on: with the collector running,
    # each generation-2 pass walks all made so far (3-4x the load time at 2*10^4 claims).
    pickled = data if data.startswith(_PICKLE) else zlib.decompress(data)
    gc.disable()
    try:
        state = pickle.loads(pickled)  # noqa: S301  (signed by this service's own log key, checked above)
    finally:
        gc.enable()
    gc.freeze()
    if not isinstance(state, LedgerState) or state.size != header.size or state.is_draft:
        raise VerificationError("it does not hold a sealed state of its size")
    if not holds_every_part(state):
        raise VerificationError("it was taken before the fold kept the reports' tallies")
    return state


class SnapshotKeeper:
    """Takes a snapshot whenever the log has grown by ``every`` entries since the last one
    (checked every ``interval`` seconds, in a background thread), and once more on stop."""

    def __init__(
        self,
        engine: Engine,
        origin: str,
        committed: Callable[[], LedgerState],
        signer_for: Callable[[int], Signer],
        every: int,
        interval: float = 10.0,
    ) -> None:
        self.engine, self.origin = engine, origin
        self.committed, self.signer_for = committed, signer_for
        self.every, self.interval = every, interval
        known = headers(engine)
        self.last = known[-1].size if known else 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="suanli-snapshots", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.committed().size - self.last >= self.every:
                self.take()

    def take(self) -> SnapshotHeader | None:
        state = self.committed()
        if state.size <= self.last or state.size == 0:
            return None
        try:
            header = save_snapshot(self.engine, self.origin, state, self.signer_for(state.size))
        except Exception:  # retried at the next tick; a restart then replays a longer tail
            log.exception("taking a fold snapshot at size %d failed", state.size)
            return None
        self.last = header.size
        log.info("fold snapshot at size %d stored", header.size)
        return header

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.take()
