"""Tables of the ledger's store. The log tables are append-only; the database enforces it
on PostgreSQL (trigger, see the first migration) and the application never issues UPDATE or
DELETE against them on any backend."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, LargeBinary, MetaData, SmallInteger, Table, Text

metadata = MetaData()

# One row per log entry; ``data`` is the entry's canonical bytes, the Merkle leaf.
log_entries = Table(
    "log_entries",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
)

# Every full subtree's hash, (level, index) as in ledger.merkle.NodeId. Level 0 holds leaf
# hashes. A root or a proof reads O(log n) of these rows; a C2SP tile at tile level L is the
# run of rows at tree level 8L.
log_nodes = Table(
    "log_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
)

# The signed checkpoint note for every size the log has had at a commit.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("note", Text, nullable=False),
)

APPEND_ONLY_TABLES = ("log_entries", "log_nodes", "checkpoints")
