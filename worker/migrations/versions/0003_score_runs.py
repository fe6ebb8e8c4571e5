"""orders_prediction.score_run_id: the batch scoring run (`osml score`) that wrote a row, NULL for event rows

A batch row's event_id is uuid5(run id, order id), so the existing unique event_id makes a re-run of the same
run insert nothing; this column tells a run's rows apart (count them, compare runs, delete one).

Revision ID: 0003_score
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0003_score"
down_revision = "0003_live"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE orders_prediction ADD COLUMN score_run_id varchar(64)")
    op.execute(
        "CREATE INDEX orders_prediction_score_run ON orders_prediction (score_run_id) WHERE score_run_id IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX orders_prediction_score_run")
    op.execute("ALTER TABLE orders_prediction DROP COLUMN score_run_id")
