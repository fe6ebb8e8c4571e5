"""orders_prediction (docs/worker.md) and the outbox of ML_PREDICTION_READY events

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # order_id has no foreign key: the backend's orders table lives in the backend's database.
    # event_id (the REQUESTED event's id) makes a redelivered event a no-op.
    op.execute(
        """
        CREATE TABLE orders_prediction (
            id uuid PRIMARY KEY,
            order_id uuid NOT NULL,
            model_version varchar(64) NOT NULL,
            sla_risk numeric(5, 4) NOT NULL CHECK (sla_risk BETWEEN 0 AND 1),
            eta_minutes integer NOT NULL CHECK (eta_minutes >= 0),
            predicted_at timestamptz NOT NULL,
            features_snapshot jsonb,
            event_id uuid NOT NULL UNIQUE
        )
        """
    )
    op.execute("CREATE INDEX orders_prediction_order_id ON orders_prediction (order_id, predicted_at DESC)")
    # payload is the READY body as published, kept as text so its bytes never change
    op.execute(
        """
        CREATE TABLE outbox (
            id bigserial PRIMARY KEY,
            event_id uuid NOT NULL UNIQUE,
            source_event_id uuid NOT NULL,
            routing_key varchar(255) NOT NULL,
            payload text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            sent_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL")


def downgrade() -> None:
    op.execute("DROP TABLE outbox")
    op.execute("DROP TABLE orders_prediction")
