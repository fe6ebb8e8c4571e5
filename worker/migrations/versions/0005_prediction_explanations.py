"""orders_prediction.explanations: the scorer's feature contributions for a row, when the worker asks for them

NULL unless `OSML_WORKER_EXPLAIN` is set (docs/worker.md); otherwise `{"slaRisk": ..., "etaMinutes": ...}` as
`/predict?explain=k` answers it (docs/serving.md, "Explanations"). A nullable column without a default: PostgreSQL
adds it without rewriting the table, and the worker's table-wide INSERT grant covers it.

Revision ID: 0005_explain
Revises: 0004_shadow
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0005_explain"
down_revision = "0004_shadow"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE orders_prediction ADD COLUMN explanations jsonb")


def downgrade() -> None:
    op.execute("ALTER TABLE orders_prediction DROP COLUMN explanations")
