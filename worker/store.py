"""PostgreSQL side of the worker: one transaction stores a batch of predictions and their READY events.

Idempotency lives in the statement: a prediction whose REQUESTED event id is already stored is skipped
(ON CONFLICT DO NOTHING) and only the rows actually inserted get an outbox row, so a redelivered event makes
neither a second prediction nor a second READY event.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

import orjson
import psycopg

from worker.events import PredictionReady
from worker.migrate import psycopg_url
from worker.resilience import TransientError

OUTBOX_CHANNEL: Final = "osml_outbox"
# SQLSTATE classes that blame the rows themselves (data exception, integrity constraint, program limit such as a
# value too large, an exception raised by a trigger): the same rows can never be stored. Any other error (access,
# missing table, server trouble) is the database's or our configuration's, and is retried.
_ROW_FAULT_CLASSES: Final = frozenset({"22", "23", "54", "P0"})

# the batch travels as one JSON array (one parameter, encoded in C by orjson): far cheaper than ten typed arrays
_SAVE = """
WITH data AS (
    SELECT * FROM jsonb_to_recordset(%(batch)s::jsonb) AS t(
        id uuid, event_id uuid, order_id uuid, model_version text, sla_risk numeric, eta_minutes int,
        predicted_at timestamptz, features jsonb, explanations jsonb, ready_event_id uuid, payload text)
), inserted AS (
    INSERT INTO orders_prediction
        (id, event_id, order_id, model_version, sla_risk, eta_minutes, predicted_at, features_snapshot, explanations)
    SELECT id, event_id, order_id, model_version, sla_risk, eta_minutes, predicted_at, features, explanations
    FROM data
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
)
INSERT INTO outbox (event_id, source_event_id, routing_key, payload)
SELECT d.ready_event_id, d.event_id, %(routing_key)s, d.payload
FROM data d JOIN inserted i ON i.event_id = d.event_id
RETURNING source_event_id
"""


def sla_risk_4dp(value: float) -> Decimal:
    """The stored precision of sla_risk (numeric(5,4)), clamped to [0, 1]."""
    return Decimal(str(min(1.0, max(0.0, value)))).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def eta_whole_minutes(value: float) -> int:
    return max(0, round(value))


@dataclass(frozen=True)
class PredictionRecord:
    """One row of orders_prediction plus the READY event announcing it."""

    event_id: str
    order_id: str
    model_version: str
    sla_risk: Decimal
    eta_minutes: int
    predicted_at: datetime
    features: dict[str, Any]
    explanations: dict[str, Any] | None  # None (SQL NULL) unless the worker asks for them (OSML_WORKER_EXPLAIN)
    ready: PredictionReady


class StoreRejected(Exception):
    """PostgreSQL refused the rows themselves; `detail` is its SQLSTATE and message."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class PredictionStore:
    """Holds one connection, reconnecting after failures; database trouble surfaces as TransientError, rows the
    database refuses as StoreRejected."""

    def __init__(self, database_url: str) -> None:
        self._url = psycopg_url(database_url)
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def save(self, records: Sequence[PredictionRecord], *, routing_key: str) -> set[str]:
        """Insert the records not stored yet and their outbox rows in one transaction; NOTIFY the relay.
        Returns the event ids that were new. The caller dedupes event ids within one call."""
        if not records:
            return set()
        batch = [
            {
                "id": str(uuid.uuid4()),
                "event_id": r.event_id,
                "order_id": r.order_id,
                "model_version": r.model_version,
                "sla_risk": str(r.sla_risk),
                "eta_minutes": r.eta_minutes,
                "predicted_at": r.predicted_at.isoformat(),
                "features": r.features,
                "explanations": r.explanations,
                "ready_event_id": r.ready.eventId,
                "payload": r.ready.to_json().decode(),
            }
            for r in records
        ]
        try:
            params = {"batch": orjson.dumps(batch).decode(), "routing_key": routing_key}
        except orjson.JSONEncodeError as exc:  # e.g. a string PostgreSQL could not hold either
            raise StoreRejected(f"features not encodable as JSON: {exc}") from exc
        try:
            conn = await self._connection()
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute(_SAVE, params)
                new = {str(row[0]) for row in await cur.fetchall()}
                if new:
                    await cur.execute("SELECT pg_notify(%s, '')", (OUTBOX_CHANNEL,))
            return new
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            await self._discard()
            raise TransientError(f"database: {exc}") from exc
        except psycopg.Error as exc:
            detail = f"{exc.sqlstate}: {exc.diag.message_primary or exc}"
            if (exc.sqlstate or "")[:2] in _ROW_FAULT_CLASSES:
                raise StoreRejected(detail) from exc
            await self._discard()
            raise TransientError(f"database: {detail}") from exc

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self._url, connect_timeout=5)
        return self._conn

    async def _discard(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            finally:
                self._conn = None
