"""Stored predictions and the backend's realised outcomes, read from PostgreSQL and joined by order id.

The two may live in different databases (the backend's `orders` table is the backend's), so the join is made here:
predictions of the evaluated span first, then the outcomes of just those orders. The outcomes table needs `id`,
`due_at` and `done_at`; `canceled_at` and `sla_breached` are read when the table has them. Any feed that keeps a
table of that shape (an ORDER_CLOSED consumer, a nightly export) can stand in for the backend's table
(OSML_OUTCOMES_TABLE, OSML_OUTCOMES_DATABASE_URL).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final

import pandas as pd
import psycopg
from psycopg import sql

from worker.migrate import psycopg_url

OUTCOME_COLUMNS: Final = ("due_at", "done_at", "canceled_at", "sla_breached")
_REQUIRED: Final = ("id", "due_at", "done_at")
_CHUNK: Final = 10_000
# ids compare as text (the backend may keep uuid or text ids); the label may be smallint, boolean or numeric
_SELECTED: Final = {"id": "{}::text", "sla_breached": "{}::int::float8"}

_PREDICTIONS = """
SELECT order_id::text, model_version, sla_risk::float8, eta_minutes::float8, predicted_at
FROM orders_prediction WHERE predicted_at > %s AND predicted_at <= %s
"""
_PREDICTION_COLUMNS: Final = ("order_id", "model_version", "sla_risk", "eta_minutes", "predicted_at")
# the challenger's rows (serving/shadow.py), each with production's answer to the same request
_SHADOW = """
SELECT order_id, production_version, production_sla_risk::float8, production_eta_minutes::float8,
       challenger_version, challenger_sla_risk::float8, challenger_eta_minutes::float8, predicted_at
FROM orders_prediction_shadow WHERE predicted_at > %s AND predicted_at <= %s
"""
_SHADOW_COLUMNS: Final = (
    "order_id",
    "production_version",
    "production_sla_risk",
    "production_eta_minutes",
    "challenger_version",
    "challenger_sla_risk",
    "challenger_eta_minutes",
    "predicted_at",
)


class OutcomesTableError(RuntimeError):
    """The configured outcomes table is missing or lacks a required column."""


@contextmanager
def _connect(url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(psycopg_url(url), connect_timeout=10) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        yield conn


def _read_span(
    database_url: str, query: str, columns: Sequence[str], *, since: datetime, until: datetime
) -> pd.DataFrame:
    with _connect(database_url) as conn:
        rows = conn.execute(query, (since, until)).fetchall()
    frame = pd.DataFrame(rows, columns=list(columns))
    frame["predicted_at"] = pd.to_datetime(frame["predicted_at"], utc=True)
    return frame


def read_predictions(database_url: str, *, since: datetime, until: datetime) -> pd.DataFrame:
    """Predictions made in (since, until]."""
    return _read_span(database_url, _PREDICTIONS, _PREDICTION_COLUMNS, since=since, until=until)


def read_shadow(database_url: str, *, since: datetime, until: datetime) -> pd.DataFrame:
    """Shadow rows (challenger and production answers side by side) made in (since, until]."""
    return _read_span(database_url, _SHADOW, _SHADOW_COLUMNS, since=since, until=until)


def _table_columns(conn: psycopg.Connection[Any], table: str) -> set[str]:
    schema, _, name = table.rpartition(".")
    found = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
        " AND table_schema = COALESCE(NULLIF(%s, ''), current_schema())",
        (name, schema),
    ).fetchall()
    return {str(row[0]) for row in found}


def read_outcomes(database_url: str, table: str, order_ids: Sequence[str]) -> pd.DataFrame:
    """One row per known order id: `id` and OUTCOME_COLUMNS (NaT / NaN where the table has no such column)."""
    with _connect(database_url) as conn:
        present = _table_columns(conn, table)
        if not present:
            raise OutcomesTableError(f"outcomes table {table!r} does not exist")
        missing = [c for c in _REQUIRED if c not in present]
        if missing:
            raise OutcomesTableError(f"outcomes table {table!r} lacks column(s) {', '.join(missing)}")
        columns = ["id", *(c for c in OUTCOME_COLUMNS if c in present)]
        query = sql.SQL("SELECT {} FROM {} WHERE id::text = ANY(%s)").format(
            sql.SQL(", ").join(sql.SQL(_SELECTED.get(c, "{}")).format(sql.Identifier(c)) for c in columns),
            sql.Identifier(*table.split(".")),
        )
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(order_ids), _CHUNK):
            rows += conn.execute(query, (list(order_ids[start : start + _CHUNK]),)).fetchall()
    frame = pd.DataFrame(rows, columns=columns)
    for column in OUTCOME_COLUMNS:
        values = frame[column] if column in frame else pd.Series(None, index=frame.index, dtype="object")
        frame[column] = values.astype("float64") if column == "sla_breached" else pd.to_datetime(values, utc=True)
    return frame.drop_duplicates("id")


def with_outcomes(predictions: pd.DataFrame, outcomes_url: str, table: str) -> pd.DataFrame:
    """`predictions` with their order's outcome columns (NaT / NaN: the order is not in the table)."""
    outcomes = read_outcomes(outcomes_url, table, sorted(set(predictions["order_id"])))
    return predictions.merge(outcomes, how="left", left_on="order_id", right_on="id").drop(columns="id")
