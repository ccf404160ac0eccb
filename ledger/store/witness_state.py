"""A witness's durable state: per log origin, the latest checkpoint it cosigned.

c2sp.org/tlog-witness requires that "checking the old size against the latest checkpoint
and persisting the new checkpoint must be performed atomically", or two concurrent
requests can roll the record back. Here the check is the decision in
``ledger.witness.Witness.add_checkpoint`` and the persisting is ``compare_and_swap``: an
``UPDATE ... WHERE origin = ? AND size = <old> AND root = <old root>`` (or an insert that
does nothing if a row exists, for the first checkpoint of an origin). A swap that matches
no row means another request won; the caller reads the new record and decides again, so
the witness never cosigns a checkpoint inconsistent with one it cosigned before, across
concurrent requests and restarts.

The witness has its own database (by default ``witness.db`` in its data directory, created
0600), not the ledger's: a witness is run by someone other than the log's operator. Its one
table is created on open (no migrations: it has had one shape so far). Sizes are stored as
decimal text because a checkpoint size is a uint64 and SQL ``BIGINT`` is signed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, LargeBinary, MetaData, Table, Text, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ledger.store.db import make_engine
from ledger.witness import WitnessState

metadata = MetaData()

witness_checkpoints = Table(
    "witness_checkpoints",
    metadata,
    # The witness's cosigner key ID (name+hex8): two witnesses pointed at one database by
    # mistake still keep two records, each its own history.
    Column("witness", Text, primary_key=True),
    Column("origin", Text, primary_key=True),
    Column("size", Text, nullable=False),  # decimal uint64
    Column("root", LargeBinary, nullable=False),
    # The checkpoint as last cosigned: the log's signature lines the witness verified and
    # its own cosignature, served to monitors.
    Column("note", Text, nullable=False),
)


@dataclass(frozen=True)
class Recorded:
    """The row for one origin: the state the witness decides on, and the note it served."""

    state: WitnessState
    note: str


class WitnessStateStore:
    """One witness's records on SQLite or PostgreSQL, ``witness`` naming it (its cosigner
    key ID); safe to share between threads and between processes on one database."""

    def __init__(self, url: str, witness: str) -> None:
        self.witness = witness
        self.engine = make_engine(url)
        metadata.create_all(self.engine, checkfirst=True)

    def close(self) -> None:
        self.engine.dispose()

    def get(self, origin: str) -> Recorded | None:
        t = witness_checkpoints
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.c.size, t.c.root, t.c.note).where(
                    t.c.witness == self.witness, t.c.origin == origin
                )
            ).first()
        if row is None:
            return None
        return Recorded(WitnessState(int(row.size), bytes(row.root)), row.note)

    def origins(self) -> list[str]:
        with self.engine.connect() as conn:
            t = witness_checkpoints
            rows = conn.execute(select(t.c.origin).where(t.c.witness == self.witness))
            return list(rows.scalars())

    def compare_and_swap(
        self, origin: str, expected: WitnessState | None, new: WitnessState, note: str
    ) -> bool:
        """Record ``new`` for ``origin`` if the record is still ``expected`` (``None``: no
        row yet). Returns whether it did; ``False`` means another request changed it first.
        Committed (and, on SQLite, synced) before returning."""
        t = witness_checkpoints
        values = {"size": str(new.size), "root": new.root, "note": note}
        # Whether a row was written is read from RETURNING, not rowcount: with SQLAlchemy
        # 2.1 and psycopg 3, INSERT ... ON CONFLICT DO NOTHING reported a rowcount of -1.
        # BEGIN IMMEDIATE on SQLite: take the write lock before the statement, so a busy
        # database makes this wait (busy_timeout) rather than fail.
        with self.engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
            if expected is None:
                # Insert if absent: a concurrent first insert makes this one do nothing.
                dialect_insert = (
                    postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
                )
                stmt = dialect_insert(t).values(witness=self.witness, origin=origin, **values)
                inserted = stmt.on_conflict_do_nothing().returning(t.c.origin)
                return conn.execute(inserted).first() is not None
            swapped = (
                update(t)
                .where(
                    t.c.witness == self.witness,
                    t.c.origin == origin,
                    t.c.size == str(expected.size),
                    t.c.root == expected.root,
                )
                .values(**values)
                .returning(t.c.origin)
            )
            return conn.execute(swapped).first() is not None
