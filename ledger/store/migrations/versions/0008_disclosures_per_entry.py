"""Disclosures one row per entry: a claim's five disclosures had five rows, each with its
64-character digest in the primary key; one row per entry holds them in digest order, one
per line, at about a third of the bytes. An erased entry's row names the erase entry.

Revision ID: 0008_disclosures_per_entry
Revises: 0007_token_expiry
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_disclosures_per_entry"
down_revision = "0007_token_expiry"
branch_labels = None
depends_on = None

ERASED_PREFIX = "erased:"  # ledger.disclosure's erasure marker, as it was when this was written
BATCH = 10_000  # entries copied per statement: memory stays bounded on a long log


def upgrade() -> None:
    op.create_table(
        "entry_disclosures",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("erased_by", sa.BigInteger, nullable=True),
    )
    op.create_index(
        "entry_disclosures_erased",
        "entry_disclosures",
        ["erased_by"],
        sqlite_where=sa.text("erased_by IS NOT NULL"),
        postgresql_where=sa.text("erased_by IS NOT NULL"),
    )
    conn = op.get_bind()
    old = sa.table("disclosures", sa.column("idx"), sa.column("digest"), sa.column("data"))
    new = sa.table("entry_disclosures", sa.column("idx"), sa.column("data"), sa.column("erased_by"))
    last = conn.execute(sa.select(sa.func.max(old.c.idx))).scalar()
    for start in range(0, -1 if last is None else int(last) + 1, BATCH):
        rows = conn.execute(
            sa.select(old.c.idx, old.c.data)
            .where(old.c.idx >= start, old.c.idx < start + BATCH)
            .order_by(old.c.idx, old.c.digest)
        ).all()
        grouped: dict[int, list[str]] = {}
        for idx, data in rows:
            grouped.setdefault(int(idx), []).append(str(data))
        if grouped:
            conn.execute(sa.insert(new), [_row(i, d) for i, d in grouped.items()])
    op.drop_table("disclosures")


def _row(idx: int, data: list[str]) -> dict[str, object]:
    marker = len(data) == 1 and data[0].startswith(ERASED_PREFIX)
    by = int(data[0][len(ERASED_PREFIX) :]) if marker else None
    return {"idx": idx, "data": "\n".join(data), "erased_by": by}


def downgrade() -> None:
    op.create_table(
        "disclosures",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
    )
    conn = op.get_bind()
    new = sa.table("entry_disclosures", sa.column("idx"), sa.column("data"), sa.column("erased_by"))
    old = sa.table("disclosures", sa.column("idx"), sa.column("digest"), sa.column("data"))
    for idx, data, by in conn.execute(sa.select(new.c.idx, new.c.data, new.c.erased_by)):
        if by is not None:
            conn.execute(sa.insert(old), [{"idx": idx, "digest": "erased", "data": data}])
            continue
        parts = str(data).split("\n")
        conn.execute(sa.insert(old), [{"idx": idx, "digest": _digest(p), "data": p} for p in parts])
    op.drop_table("entry_disclosures")


def _digest(encoded: str) -> str:
    import base64
    import hashlib

    digest = hashlib.sha256(encoded.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
