"""`postgresql://` sources: the backend's `orders` and `order_status_history` tables (psycopg 3).

Reading takes every row of `orders` (and of `order_status_history` when that table exists) and validates them
like any other source. `load_into_postgres` writes the canonical tables (dropping earlier ones) with COPY.
"""

from __future__ import annotations

from typing import Final

import pandas as pd
import psycopg
from psycopg import sql

from osml.dataset_access import mask_secrets
from training.data.canonical import (
    HISTORY_COLUMNS,
    HISTORY_COUNTER_COLUMNS,
    ORDER_COLUMNS,
    OrdersData,
    canonical_history,
    canonical_orders,
    csv_bytes,
)
from training.data.errors import DataError

SCHEMES: Final = ("postgresql", "postgres", "postgresql+psycopg")
ORDERS_TABLE: Final = "orders"
HISTORY_TABLE: Final = "order_status_history"

_ORDERS_DDL: Final = """
CREATE TABLE orders (
    id text PRIMARY KEY,
    category text NOT NULL,
    priority text NOT NULL,
    created_at timestamptz NOT NULL,
    due_at timestamptz,
    done_at timestamptz,
    canceled_at timestamptz,
    assignee_id text,
    sla_breached smallint,
    location text,
    subcategory text,
    assignment_group text,
    channel text
)"""
_HISTORY_DDL: Final = """
CREATE TABLE order_status_history (
    id bigserial PRIMARY KEY,
    order_id text NOT NULL,
    status text NOT NULL,
    changed_at timestamptz NOT NULL,
    reassignment_count integer,
    reopen_count integer
)"""
_HISTORY_INDEX: Final = "CREATE INDEX order_status_history_order_id ON order_status_history (order_id, changed_at)"


def connection_url(ref: str) -> str:
    """The libpq URL for a datasetRef (`postgresql+psycopg://` is accepted as SQLAlchemy spells it)."""
    scheme, rest = ref.split("://", 1)
    if scheme not in SCHEMES:
        raise DataError(f"unsupported scheme '{scheme}'", source=ref)
    return f"postgresql://{rest}"


def _table(conn: psycopg.Connection, table: str) -> pd.DataFrame | None:
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    if not exists or not exists[0]:
        return None
    cursor = conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
    names = [column.name for column in cursor.description or []]
    return pd.DataFrame(cursor.fetchall(), columns=names)


def read_postgres(ref: str) -> OrdersData:
    shown = mask_secrets(ref)
    try:
        with psycopg.connect(connection_url(ref), connect_timeout=10) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            orders = _table(conn, ORDERS_TABLE)
            history = _table(conn, HISTORY_TABLE)
    except psycopg.Error as exc:
        raise DataError(f"cannot read the database: {exc}".strip(), source=shown) from exc
    if orders is None:
        raise DataError(f"table '{ORDERS_TABLE}' does not exist", source=shown)
    return OrdersData(
        orders=canonical_orders(orders, source=f"{shown} table {ORDERS_TABLE}"),
        history=None if history is None else canonical_history(history, source=f"{shown} table {HISTORY_TABLE}"),
        source=shown,
    )


def load_into_postgres(data: OrdersData, url: str) -> None:
    """Create (or replace) the `orders` and `order_status_history` tables in `url` and fill them."""
    orders = data.orders[list(ORDER_COLUMNS)]
    with psycopg.connect(connection_url(url), connect_timeout=10) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {HISTORY_TABLE}, {ORDERS_TABLE}")
        conn.execute(_ORDERS_DDL)
        conn.execute(_HISTORY_DDL)
        _copy(conn, ORDERS_TABLE, ORDER_COLUMNS, csv_bytes(orders))
        if data.history is not None:
            columns = (*HISTORY_COLUMNS, *(c for c in HISTORY_COUNTER_COLUMNS if c in data.history.columns))
            _copy(conn, HISTORY_TABLE, columns, csv_bytes(data.history[list(columns)]))
        conn.execute(_HISTORY_INDEX)


def _copy(conn: psycopg.Connection, table: str, columns: tuple[str, ...], payload: bytes) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true)").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(payload)
