"""index on outbox.sent_at, so the relay's pruning of old sent rows reads only what it deletes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX outbox_sent_at")
