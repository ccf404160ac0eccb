"""The stored projection: the live fold's money state, for comparison with a replay.

Revision ID: 0003_projection
Revises: 0002_tokens
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_projection"
down_revision = "0002_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projection",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("projection")
