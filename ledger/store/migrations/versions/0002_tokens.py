"""API tokens (stored as SHA-256 hashes, never in clear).

Revision ID: 0002_tokens
Revises: 0001_log
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_tokens"
down_revision = "0001_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("district", sa.Text, nullable=True),
        sa.Column("entity", sa.String(18), nullable=True),
        sa.Column("centre", sa.String(32), nullable=True),
        sa.Column("label", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("revoked_at", sa.Text, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
