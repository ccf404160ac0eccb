"""Fold snapshots: the state at a size, so that a restart replays only the tail.

Revision ID: 0004_snapshots
Revises: 0003_projection
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_snapshots"
down_revision = "0003_projection"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fold_snapshots",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("state_sha256", sa.String(64), nullable=False),
        sa.Column("summary_sha256", sa.String(64), nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "fold_snapshot_chunks",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("fold_snapshot_chunks")
    op.drop_table("fold_snapshots")
