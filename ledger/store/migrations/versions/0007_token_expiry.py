"""API tokens expire: when each expires, and when it was last used.

Tokens made before this revision are given the default validity (90 days) from now.

Revision ID: 0007_token_expiry
Revises: 0006_cosignatures
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0007_token_expiry"
down_revision = "0006_cosignatures"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.Text, nullable=True))
        batch.add_column(sa.Column("last_used_at", sa.Text, nullable=True))
    expires = (datetime.now(UTC) + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    op.execute(
        sa.text("UPDATE api_tokens SET expires_at = :expires WHERE expires_at IS NULL").bindparams(
            expires=expires
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("last_used_at")
        batch.drop_column("expires_at")
