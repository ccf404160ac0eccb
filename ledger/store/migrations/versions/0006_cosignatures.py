"""Cosignatures: witnesses' cosignatures on the log's checkpoints.

Revision ID: 0006_cosignatures
Revises: 0005_disclosures
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_cosignatures"
down_revision = "0005_disclosures"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cosignatures",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("witness", sa.Text, primary_key=True),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cosignatures")
