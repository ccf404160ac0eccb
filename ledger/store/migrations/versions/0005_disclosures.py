"""Disclosures: the openings of entries' concealed members, kept beside the log.

Revision ID: 0005_disclosures
Revises: 0004_snapshots
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_disclosures"
down_revision = "0004_snapshots"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "disclosures",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("disclosures")
