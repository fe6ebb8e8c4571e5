"""orders_prediction_shadow: the challenger pair's predictions beside production's, one row per order scored by both

Written by the facade's and the in-process scorer's shadow (serving/shadow.py), read by `osml evaluate-live`, which
compares the two versions on exactly these rows (docs/operations.md, "Shadow challenger"). order_id is text: a
/predict caller's orderId is any identifier, not necessarily a uuid.

Revision ID: 0004_shadow
Revises: 0003_score
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0004_shadow"
down_revision = "0003_score"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE orders_prediction_shadow (
            id uuid PRIMARY KEY,
            request_id varchar(200) NOT NULL,
            order_id varchar(200) NOT NULL,
            predicted_at timestamptz NOT NULL,
            production_version varchar(64) NOT NULL,
            production_sla_risk numeric(5, 4) NOT NULL CHECK (production_sla_risk BETWEEN 0 AND 1),
            production_eta_minutes integer NOT NULL CHECK (production_eta_minutes >= 0),
            challenger_version varchar(64) NOT NULL,
            challenger_sla_risk numeric(5, 4) NOT NULL CHECK (challenger_sla_risk BETWEEN 0 AND 1),
            challenger_eta_minutes integer NOT NULL CHECK (challenger_eta_minutes >= 0)
        )
        """
    )
    op.execute("CREATE INDEX orders_prediction_shadow_predicted_at ON orders_prediction_shadow (predicted_at)")


def downgrade() -> None:
    op.execute("DROP TABLE orders_prediction_shadow")
