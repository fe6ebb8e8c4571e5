"""index on orders_prediction.predicted_at, so live evaluation reads only the predictions of its windows

Revision ID: 0003_live
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0003_live"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX orders_prediction_predicted_at ON orders_prediction (predicted_at)")


def downgrade() -> None:
    op.execute("DROP INDEX orders_prediction_predicted_at")
