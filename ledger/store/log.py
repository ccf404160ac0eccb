"""The log's storage: entries, Merkle nodes and checkpoints, on SQLite or PostgreSQL.

Appends are serialised so that index order is commit order: on PostgreSQL every writer
takes ``pg_advisory_xact_lock`` before it reads the size, and on SQLite it opens its
transaction with ``BEGIN IMMEDIATE``. Only one writer at a time holds the right edge of
the tree; it reads the O(log n) right-edge nodes, appends, writes the new full nodes and a
signed checkpoint for the new size, all in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from ledger import merkle
from ledger.disclosure import digest_of, erasure_marker
from ledger.entry import Entry
from ledger.errors import LogCorrupt
from ledger.store.schema import (
    checkpoints,
    cosignatures,
    disclosures,
    log_entries,
    log_nodes,
    projection,
    snapshot_chunks,
    snapshots,
)
from ledger.tlogpolicy import Policy

# Any constant works; it names suanli's append lock among the database's advisory locks.
APPEND_LOCK_KEY = 0x7375616E6C69  # "suanli"
PROJECTION_LOCK_KEY = APPEND_LOCK_KEY + 1
_NODE_BATCH = 500


def _read_nodes(conn: Connection, ids: Sequence[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
    found: dict[merkle.NodeId, bytes] = {}
    wanted = list(dict.fromkeys(ids))
    for start in range(0, len(wanted), _NODE_BATCH):
        chunk = wanted[start : start + _NODE_BATCH]
        where: ColumnElement[bool]
        if conn.dialect.name == "postgresql":
            where = tuple_(log_nodes.c.level, log_nodes.c.idx).in_(chunk)
        else:
            where = or_(*(and_(log_nodes.c.level == lv, log_nodes.c.idx == ix) for lv, ix in chunk))
        for level, idx, digest in conn.execute(
            select(log_nodes.c.level, log_nodes.c.idx, log_nodes.c.hash).where(where)
        ):
            found[(level, idx)] = bytes(digest)
    missing = [i for i in wanted if i not in found]
    if missing:
        raise LookupError(f"log nodes missing from storage: {missing[:5]}")
    return found


@dataclass(frozen=True)
class Staged:
    """A point in a writer's staging: the tree's right edge and how many rows were staged."""

    size: int
    hashes: list[bytes]
    entries: int
    nodes: int
    disclosures: int
    erasures: int


@dataclass(frozen=True)
class _Rows:
    """How a staged row (a tuple, in the order of ``columns``) is inserted."""

    table: Table
    columns: tuple[str, ...]

    @cached_property
    def sqlite(self) -> str:
        """The same INSERT as SQLite's driver takes it (positional ``?`` parameters)."""
        statement = insert(self.table).values({c: bindparam(c) for c in self.columns})
        return str(statement.compile(dialect=sqlite_dialect()))


_ENTRY = _Rows(log_entries, ("idx", "data"))
_NODE = _Rows(log_nodes, ("level", "idx", "hash"))
_DISCLOSURE = _Rows(disclosures, ("idx", "data", "erased_by"))


def _insert(conn: Connection, how: _Rows, rows: list[tuple[object, ...]]) -> None:
    """Insert ``rows`` in one statement. On SQLite the rows go to the driver's executemany
    as they are (SQLAlchemy's per-row parameter processing cost about a third of the
    inserts' CPU time there); elsewhere through SQLAlchemy, which batches them into
    multi-row INSERTs for psycopg."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(how.sqlite, rows)
    else:
        conn.execute(insert(how.table), [dict(zip(how.columns, r, strict=True)) for r in rows])


class LogWriter:
    """One write transaction holding the append lock."""

    def __init__(self, conn: Connection, edge: merkle.CompactRange | None = None) -> None:
        """``edge``: the right edge this process committed last; used when the log has not
        grown since (the log only grows, so one size is one tree), else read from storage."""
        self.conn = conn
        size = _size(conn)
        if edge is not None and edge.size == size:
            self.range = merkle.CompactRange(size, edge.hashes())
        else:
            ids = merkle.CompactRange.node_ids(size)
            nodes = _read_nodes(conn, ids) if ids else {}
            self.range = merkle.CompactRange(size, [nodes[i] for i in ids])
        self.start_size = size
        # rows to insert, each as a tuple in the order of _ENTRY, _NODE and _DISCLOSURE
        self._entries: list[tuple[object, ...]] = []
        self._nodes: list[tuple[object, ...]] = []
        self._disclosures: list[tuple[object, ...]] = []
        self._erasures: list[tuple[int, int]] = []  # (entry index, the erase entry's index)
        self.flushed = False

    @property
    def size(self) -> int:
        return self.range.size

    def committed_since(self, start: int) -> list[Entry]:
        """Entries other writers committed from ``start`` up to this transaction's start,
        with their disclosures."""
        if start >= self.start_size:
            return []
        return _replay(self.conn, start, self.start_size)

    def append(self, leaf: bytes, disclosures: Sequence[str] = ()) -> int:
        """Stage ``leaf`` and the disclosures that open it; return its index."""
        index = self.range.size
        new_nodes = self.range.append(merkle.leaf_hash(leaf))
        self._entries.append((index, leaf))
        if disclosures:
            ordered = "\n".join(sorted(disclosures, key=digest_of))
            self._disclosures.append((index, ordered, None))
        self._nodes.extend((lv, ix, h) for (lv, ix), h in new_nodes)
        return index

    def erase(self, indices: Sequence[int], erased_by: int) -> None:
        """Stage the deletion of the disclosures of entries ``indices``, erased by the entry
        ``erased_by`` (``ledger.erasure``): a marker row takes their place."""
        self._erasures.extend((i, erased_by) for i in indices)

    def mark(self) -> Staged:
        """Where staging stands now, to go back to with :meth:`rollback_to`."""
        if self.flushed:
            raise RuntimeError("rows already flushed cannot be taken back")
        return Staged(
            self.range.size,
            self.range.hashes(),
            len(self._entries),
            len(self._nodes),
            len(self._disclosures),
            len(self._erasures),
        )

    def rollback_to(self, mark: Staged) -> None:
        """Unstage everything appended after ``mark``."""
        self.range = merkle.CompactRange(mark.size, mark.hashes)
        del self._entries[mark.entries :]
        del self._nodes[mark.nodes :]
        del self._disclosures[mark.disclosures :]
        del self._erasures[mark.erasures :]

    def root(self) -> bytes:
        return self.range.root()

    def flush(self, checkpoint_note: str | None = None) -> None:
        if self._entries:
            self.flushed = True
            _insert(self.conn, _ENTRY, self._entries)
            _insert(self.conn, _NODE, self._nodes)
            if self._disclosures:
                _insert(self.conn, _DISCLOSURE, self._disclosures)
            for index, by in self._erasures:
                _erase(self.conn, index, by)
            self._entries, self._nodes, self._disclosures, self._erasures = [], [], [], []
        if checkpoint_note is not None:
            self.conn.execute(insert(checkpoints), [{"size": self.size, "note": checkpoint_note}])


class LogStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._edge: merkle.CompactRange | None = None  # after this process's last commit

    @contextmanager
    def writer(self) -> Iterator[LogWriter]:
        """A transaction that holds the append lock; commits on normal exit, else rolls back."""
        conn = self.engine.connect()
        if self.dialect == "sqlite":
            conn = conn.execution_options(sqlite_immediate=True)
        try:
            with conn.begin():
                if self.dialect == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({APPEND_LOCK_KEY})")
                writer = LogWriter(conn, self._edge)
                yield writer
                writer.flush()
            self._edge = merkle.CompactRange(writer.range.size, writer.range.hashes())
        finally:
            conn.close()

    # --- reads (no lock; they see committed data only) ------------------------------------

    def size(self) -> int:
        with self.engine.connect() as conn:
            return _size(conn)

    def entries(self, start: int, end: int) -> list[bytes]:
        """Entries [start, end) in index order; a missing row raises LogCorrupt."""
        with self.engine.connect() as conn:
            return _entries(conn, start, end)

    def stored_entries(self, start: int, end: int) -> list[bytes]:
        """The stored rows in [start, end), gaps and all, for serving tiles as they are:
        the auditor, not the server, is the one to judge them."""
        with self.engine.connect() as conn:
            return _entries(conn, start, end, strict=False)

    def replay(self, start: int = 0, batch: int = 5000) -> Iterator[Entry]:
        """Entries from ``start`` with their disclosures, in order, as the fold takes them."""
        index = start
        while True:
            with self.engine.connect() as conn:
                chunk = _replay(conn, index, index + batch)
            if not chunk:
                return
            yield from chunk
            index += len(chunk)

    def read(self, start: int, end: int) -> list[Entry]:
        """Entries [start, end) parsed, with their disclosures beside them."""
        with self.engine.connect() as conn:
            return _replay(conn, start, end)

    def disclosures(self, start: int, end: int) -> dict[int, tuple[str, ...]]:
        """The disclosures of entries [start, end), by index (entries without any left out)."""
        with self.engine.connect() as conn:
            return _disclosures(conn, start, end)

    def iter_entries(self, start: int = 0, batch: int = 5000) -> Iterator[tuple[int, bytes]]:
        index = start
        while True:
            chunk = self.entries(index, index + batch)
            if not chunk:
                return
            for data in chunk:
                yield index, data
                index += 1

    def node_reader(self) -> Callable[[Sequence[merkle.NodeId]], Mapping[merkle.NodeId, bytes]]:
        def read(ids: Sequence[merkle.NodeId]) -> Mapping[merkle.NodeId, bytes]:
            with self.engine.connect() as conn:
                return _read_nodes(conn, ids)

        return read

    def node_range(self, level: int, start: int, end: int) -> list[bytes]:
        """Hashes of nodes (level, start..end-1), for C2SP tiles."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(log_nodes.c.hash)
                .where(log_nodes.c.level == level, log_nodes.c.idx >= start, log_nodes.c.idx < end)
                .order_by(log_nodes.c.idx)
            ).all()
        return [bytes(r[0]) for r in rows]

    def latest_checkpoint(self) -> tuple[int, str] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(checkpoints.c.size, checkpoints.c.note)
                .order_by(checkpoints.c.size.desc())
                .limit(1)
            ).first()
        return (int(row[0]), str(row[1])) if row else None

    def checkpoint(self, size: int) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(checkpoints.c.note).where(checkpoints.c.size == size)).first()
        return str(row[0]) if row else None

    def checkpoints(self, after: int = 0, limit: int | None = None) -> list[tuple[int, str]]:
        """Stored checkpoints with size > ``after``, smallest first."""
        query = (
            select(checkpoints.c.size, checkpoints.c.note)
            .where(checkpoints.c.size > after)
            .order_by(checkpoints.c.size)
        )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [(int(r[0]), str(r[1])) for r in rows]

    def add_cosignature(self, size: int, witness: str, line: str, timestamp: int) -> None:
        """Keep witness ``witness``'s (its vkey) verified cosignature ``line`` on the
        checkpoint of ``size``; a second one for the same size and witness is ignored."""
        with self.engine.begin() as conn:
            found = conn.execute(
                select(cosignatures.c.size).where(
                    cosignatures.c.size == size, cosignatures.c.witness == witness
                )
            ).first()
            if found is None:
                conn.execute(
                    insert(cosignatures).values(
                        size=size, witness=witness, line=line, timestamp=timestamp
                    )
                )

    def cosignature_lines(self, size: int) -> list[str]:
        """The cosignature lines kept for the checkpoint of ``size``, in witness order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(cosignatures.c.line)
                .where(cosignatures.c.size == size)
                .order_by(cosignatures.c.witness)
            ).all()
        return [str(r[0]) for r in rows]

    def cosigned_size(self, witness: str) -> int:
        """The largest size witness ``witness`` has cosigned here; 0 if none."""
        with self.engine.connect() as conn:
            size = conn.execute(
                select(func.max(cosignatures.c.size)).where(cosignatures.c.witness == witness)
            ).scalar()
        return int(size or 0)

    def witnessed_checkpoint(
        self, satisfied: Callable[[frozenset[str]], bool], scan: int = 256
    ) -> tuple[int, str] | None:
        """The newest checkpoint, among the ``scan`` newest sizes any witness cosigned,
        whose cosigners (their vkeys) ``satisfied`` accepts: the signed note with the
        cosignature lines appended. None if there is none."""
        with self.engine.connect() as conn:
            sizes = conn.execute(
                select(cosignatures.c.size)
                .distinct()
                .order_by(cosignatures.c.size.desc())
                .limit(scan)
            ).all()
            for (size,) in sizes:
                rows = conn.execute(
                    select(cosignatures.c.witness, cosignatures.c.line)
                    .where(cosignatures.c.size == size)
                    .order_by(cosignatures.c.witness)
                ).all()
                if not satisfied(frozenset(str(r[0]) for r in rows)):
                    continue
                note = conn.execute(
                    select(checkpoints.c.note).where(checkpoints.c.size == size)
                ).scalar()
                if note is not None:
                    return int(size), str(note) + "".join(str(r[1]) for r in rows)
        return None

    def served_checkpoint(self, policy: Policy | None) -> tuple[int, str] | None:
        """What ``GET /checkpoint`` serves: with a witness policy, the newest checkpoint
        whose cosignatures meet its quorum; otherwise (or until one does) the newest
        checkpoint with whatever cosignatures it has."""
        if policy is not None:
            names = {w.key.vkey: w.name for w in policy.witnesses}
            found = self.witnessed_checkpoint(
                lambda vkeys: policy.is_satisfied({names[v] for v in vkeys if v in names})
            )
            if found is not None:
                return found
        latest = self.latest_checkpoint()
        if latest is None:
            return None
        size, note = latest
        return size, note + "".join(self.cosignature_lines(size))


SIZE_ROW = "@size"


def save_projection(engine: Engine, size: int, values: Mapping[str, int]) -> None:
    """Replace the stored projection with ``values`` at log ``size``."""
    rows = [{"name": SIZE_ROW, "value": size}] + [
        {"name": n, "value": v} for n, v in sorted(values.items())
    ]
    conn = engine.connect()
    if engine.dialect.name == "sqlite":
        conn = conn.execution_options(sqlite_immediate=True)
    with conn, conn.begin():
        # Two processes saving at once would interleave their delete and insert.
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PROJECTION_LOCK_KEY})")
        conn.execute(projection.delete())
        conn.execute(insert(projection), rows)


def load_projection(engine: Engine) -> tuple[int, dict[str, int]] | None:
    with engine.connect() as conn:
        rows = dict(conn.execute(select(projection.c.name, projection.c.value)).all())
    if SIZE_ROW not in rows:
        return None
    size = int(rows.pop(SIZE_ROW))
    return size, {str(n): int(v) for n, v in rows.items()}


def _size(conn: Connection) -> int:
    # max(idx) + 1 is one primary-key lookup; count(*) would scan the table on PostgreSQL.
    last = conn.execute(select(func.max(log_entries.c.idx))).scalar_one()
    return 0 if last is None else int(last) + 1


def _disclosures(conn: Connection, start: int, end: int) -> dict[int, tuple[str, ...]]:
    rows = conn.execute(
        select(disclosures.c.idx, disclosures.c.data).where(
            disclosures.c.idx >= start, disclosures.c.idx < end
        )
    )
    return {int(idx): tuple(str(data).split("\n")) for idx, data in rows}


def _erase(conn: Connection, index: int, by: int) -> None:
    """Delete entry ``index``'s disclosures, leave the marker of erasure ``by``, and drop the
    fold snapshots taken while the erased values were in the state."""
    conn.execute(delete(disclosures).where(disclosures.c.idx == index))
    marker = {"idx": index, "data": erasure_marker(by), "erased_by": by}
    conn.execute(insert(disclosures), [marker])
    held = (snapshots.c.size > index) & (snapshots.c.size <= by)
    sizes = [int(r[0]) for r in conn.execute(select(snapshots.c.size).where(held))]
    conn.execute(delete(snapshot_chunks).where(snapshot_chunks.c.size.in_(sizes)))
    conn.execute(delete(snapshots).where(snapshots.c.size.in_(sizes)))


def erasures_before(conn: Connection, size: int) -> dict[int, int]:
    """Erased entries below ``size``, and the index of the entry that erased each."""
    rows = conn.execute(
        select(disclosures.c.idx, disclosures.c.erased_by).where(
            disclosures.c.erased_by.is_not(None), disclosures.c.idx < size
        )
    )
    return {int(i): int(by) for i, by in rows}


def _replay(conn: Connection, start: int, end: int) -> list[Entry]:
    """Entries [start, end) as the fold takes them: parsed, with their disclosures.

    The entries are read first and their disclosures second: on PostgreSQL (READ COMMITTED)
    each statement sees the commits made before it, so a writer committing between the two
    could otherwise add entries whose disclosures the first statement did not see. An
    entry and its disclosures commit together, so the second statement sees them all."""
    rows = _entries(conn, start, end)
    opened = _disclosures(conn, start, start + len(rows))
    return [
        Entry.from_bytes(data).disclosed(opened.get(index, ()))
        for index, data in enumerate(rows, start)
    ]


def _entries(conn: Connection, start: int, end: int, *, strict: bool = True) -> list[bytes]:
    rows = conn.execute(
        select(log_entries.c.idx, log_entries.c.data)
        .where(log_entries.c.idx >= start, log_entries.c.idx < end)
        .order_by(log_entries.c.idx)
    ).all()
    for expected, row in enumerate(rows if strict else (), start):
        if row[0] != expected:
            # Rows never go missing in an append-only table; serving the ones after a gap
            # at the wrong positions would only hide it.
            raise LogCorrupt(
                f"log entry {expected} is missing from storage", details={"index": expected}
            )
    return [bytes(r[1]) for r in rows]
