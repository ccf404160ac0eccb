"""Tables of the ledger's store. The log tables are append-only; the database enforces it
on PostgreSQL (trigger, see the first migration) and the application never issues UPDATE or
DELETE against them on any backend."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)

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

# Bearer tokens for the HTTP API. Only the SHA-256 of a token is stored; the token itself
# is shown once, when it is created.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("district", Text, nullable=True),
    Column("entity", String(18), nullable=True),
    Column("centre", String(32), nullable=True),
    Column("label", Text, nullable=False, server_default=""),
    Column("created_at", Text, nullable=False),
    Column("revoked_at", Text, nullable=True),
    Column("expires_at", Text, nullable=True),
    Column("last_used_at", Text, nullable=True),
)

# The live fold's summary (ledger.projection) at one log size; the row named "@size" holds
# the size. Rewritten whole; not part of the log.
projection = Table(
    "projection",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# Fold snapshots (ledger.store.snapshots): not part of the log; the newest two are kept.
snapshots = Table(
    "fold_snapshots",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary, nullable=False),
    Column("state_sha256", String(64), nullable=False),
    Column("summary_sha256", String(64), nullable=False),
    Column("key_id", Text, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("bytes", BigInteger, nullable=False),
)
snapshot_chunks = Table(
    "fold_snapshot_chunks",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
)

# The disclosures that open entries' concealed members (ledger.disclosure, docs/publication.md):
# beside the log, not in it; served only to the roles allowed; deleted by an erasure. One row
# per entry (a claim has five): ``data`` holds them in digest order, one per line (base64url
# has no newline). An erased entry's row holds only the erasure marker, and ``erased_by`` the
# erase entry's index (indexed only where set: erasures are rare).
disclosures = Table(
    "entry_disclosures",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("data", Text, nullable=False),
    Column("erased_by", BigInteger, nullable=True),
    Index(
        "entry_disclosures_erased",
        "erased_by",
        sqlite_where=text("erased_by IS NOT NULL"),
        postgresql_where=text("erased_by IS NOT NULL"),
    ),
)


# Witnesses' cosignatures on the log's checkpoints (docs/witness.md): beside the checkpoints,
# one row per witness and size; ``witness`` is the witness's vkey, ``line`` the verified
# c2sp.org/tlog-cosignature line, ``timestamp`` the POSIX time it states.
cosignatures = Table(
    "cosignatures",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("witness", Text, primary_key=True),
    Column("line", Text, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
)
