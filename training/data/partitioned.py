"""The orders export read in partitions, as Dask dataframes, for work that outgrows one process.

A partitioned dataset is a folder, or an `s3://bucket/prefix`, holding for each table one file or a folder of
parts (as Dask, Spark or a database export write them):

    orders.csv | orders.parquet | orders/*.csv | orders/*.parquet | orders.parquet/*.parquet
    order_status_history.csv | ... (optional, the same forms)

Each file is one partition, validated by `training.data.canonical` like any other source, so an error names the
file and its data row. A `postgresql://` database is read in ranges of `created_at` of about
`rows_per_partition` orders each, and the status history in the same ranges of its order's creation, so an
order's history sits in its order's partition. What else a datasetRef can name (one CSV, a zip, the UCI log) is
read whole by `training.data.orders.load_orders` and split in memory.

Order ids are checked unique within each file; across files they are the exporter's promise.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Final, Literal

import dask
import dask.dataframe as dd
import pandas as pd
import psycopg
import pyarrow
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql

from osml.dataset_access import mask_secrets
from training.data.canonical import (
    HISTORY_COLUMNS,
    HISTORY_COUNTER_COLUMNS,
    HISTORY_FILE,
    ORDER_COLUMNS,
    ORDERS_FILE,
    canonical_history,
    canonical_orders,
)
from training.data.errors import DataError
from training.data.files import Opener, read_csv
from training.data.orders import load_orders, local_path, validate_ref
from training.data.postgres import HISTORY_TABLE, ORDERS_TABLE, connection_url
from training.data.s3 import parse_s3_ref, s3_client

Table = Literal["orders", "history"]

ROWS_PER_PARTITION: Final = 250_000
_STEMS: Final[dict[Table, str]] = {"orders": Path(ORDERS_FILE).stem, "history": Path(HISTORY_FILE).stem}
_SUFFIXES: Final = (".csv", ".parquet")


def _history_part(raw: pd.DataFrame, *, source: str) -> pd.DataFrame:
    """Every history partition has the optional counters (NaN when its file has none): partitions share columns."""
    frame = canonical_history(raw, source=source)
    return frame.reindex(columns=[*HISTORY_COLUMNS, *HISTORY_COUNTER_COLUMNS]).astype(
        dict.fromkeys(HISTORY_COUNTER_COLUMNS, "float64")
    )


_CANONICAL: Final[dict[Table, Callable[..., pd.DataFrame]]] = {"orders": canonical_orders, "history": _history_part}
_COLUMNS: Final[dict[Table, tuple[str, ...]]] = {"orders": ORDER_COLUMNS, "history": HISTORY_COLUMNS}

# pandas' own `str` dtype is already Arrow-backed; Dask's conversion to `string[pyarrow]` would only turn missing
# text from NaN into pd.NA, which the shared feature and label code does not expect
dask.config.set({"dataframe.convert-string": False})


@dataclass(frozen=True)
class PartitionedOrders:
    """Canonical orders (and status history, when the dataset has one) as Dask dataframes."""

    orders: dd.DataFrame
    history: dd.DataFrame | None
    source: str


def empty(table: Table) -> pd.DataFrame:
    """The canonical frame with no rows: the dtypes every partition of `table` has."""
    raw = pd.DataFrame({column: pd.Series([], dtype="str") for column in _COLUMNS[table]})
    return _CANONICAL[table](raw, source="")


# ---------------------------------------------------------------- files (local or S3): one partition per file


@dataclass(frozen=True)
class FilePart:
    """One file of a partitioned dataset: a local path, or a key of `bucket`."""

    location: str
    label: str  # as errors name it
    bucket: str | None = None

    def opener(self) -> Opener:
        if self.bucket is None:
            return lambda: Path(self.location).open("rb")
        bucket = self.bucket
        return lambda: io.BytesIO(s3_client().get_object(Bucket=bucket, Key=self.location)["Body"].read())


def read_file_part(part: FilePart, table: Table) -> pd.DataFrame:
    """One partition: the file read (CSV as text, Parquet as stored) and made canonical."""
    opener = part.opener()
    try:
        if part.location.lower().endswith(".parquet"):
            try:
                with opener() as handle:
                    raw = pd.read_parquet(handle)
            except (OSError, ValueError, pyarrow.ArrowException) as exc:
                raise DataError(f"not a readable Parquet file: {exc}", source=part.label) from exc
        else:
            raw = read_csv(opener, label=part.label)
    except (BotoCoreError, ClientError) as exc:
        raise DataError(f"cannot read from S3: {exc}", source=part.label) from exc
    return _CANONICAL[table](raw, source=part.label)


def _natural(name: str) -> tuple[object, ...]:
    """part.2 before part.10."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def layout(names: Sequence[str], *, label: str) -> dict[Table, list[str]]:
    """The files of each table among `names` (POSIX paths relative to the dataset's root)."""
    found: dict[Table, list[str]] = {}
    for table, stem in _STEMS.items():
        visible = [n for n in names if not any(p.startswith((".", "_")) for p in PurePosixPath(n).parts)]
        single = [n for n in visible if n.lower() in (f"{stem}{s}" for s in _SUFFIXES)]
        folder = [
            n
            for n in visible
            if len(PurePosixPath(n).parts) > 1
            and PurePosixPath(n).parts[0].lower() in (stem, *(f"{stem}{s}" for s in _SUFFIXES))
            and n.lower().endswith(_SUFFIXES)
        ]
        if single and folder:
            raise DataError(f"both {single[0]} and a folder of {stem} parts: keep one", source=label)
        if single or folder:
            found[table] = sorted(single or folder, key=_natural)
    return found


def _from_files(parts: dict[Table, list[FilePart]], *, source: str) -> PartitionedOrders | None:
    if "orders" not in parts:
        return None  # not a partitioned layout: read whole (one CSV beside others, the UCI log)
    frames = {
        table: dd.from_map(read_file_part, files, args=(table,), meta=empty(table), label=f"read-{table}")
        for table, files in parts.items()
    }
    return PartitionedOrders(orders=frames["orders"], history=frames.get("history"), source=source)


def _local(root: Path, *, ref: str) -> PartitionedOrders | None:
    names = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    found = layout(names, label=ref)
    parts = {t: [FilePart(str(root / n), label=f"{ref.rstrip('/')}/{n}") for n in files] for t, files in found.items()}
    return _from_files(parts, source=ref)


def _s3_keys(bucket: str, prefix: str, *, ref: str) -> list[str]:
    keys: list[str] = []
    try:
        for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
    except (BotoCoreError, ClientError) as exc:
        raise DataError(f"cannot read from S3: {exc}", source=ref) from exc
    return keys


def _s3(ref: str) -> PartitionedOrders | None:
    """The dataset under an S3 prefix; None when the reference names one object or no partitioned layout."""
    bucket, key = parse_s3_ref(ref)
    prefix = f"{key.rstrip('/')}/" if key else ""
    keys = _s3_keys(bucket, prefix, ref=ref)
    if not keys and key and not key.endswith("/"):
        return None
    root = f"s3://{bucket}/{prefix}"
    found = layout([k[len(prefix) :] for k in keys], label=ref)
    parts = {t: [FilePart(prefix + n, label=root + n, bucket=bucket) for n in files] for t, files in found.items()}
    return _from_files(parts, source=ref)


# ---------------------------------------------------------------- PostgreSQL: ranges of created_at

Range = tuple[datetime | None, datetime | None]  # [low, high); None = unbounded


def _range_condition(column: sql.Composable, bounds: Range) -> tuple[sql.Composable, list[datetime]]:
    low, high = bounds
    parts: list[sql.Composable] = []
    params: list[datetime] = []
    if low is not None:
        parts.append(sql.SQL("{} >= %s").format(column))
        params.append(low)
    if high is not None:
        parts.append(sql.SQL("{} < %s").format(column))
        params.append(high)
    condition = sql.SQL(" AND ").join(parts) if parts else sql.SQL("TRUE")
    if low is None:
        # rows without a creation time belong to no range: the first one takes them, and validation names them
        condition = sql.SQL("({} OR {} IS NULL)").format(condition, column)
    return condition, params


def read_postgres_range(bounds: Range, url: str, shown: str, table: Table) -> pd.DataFrame:
    """One partition: the orders created in `bounds`, or the status history of those orders."""
    created = sql.SQL("o.created_at")
    condition, params = _range_condition(created, bounds)
    if table == "orders":
        query = sql.SQL("SELECT o.* FROM {} o WHERE {} ORDER BY o.created_at, o.id").format(
            sql.Identifier(ORDERS_TABLE), condition
        )
    else:
        query = sql.SQL(
            "SELECT h.order_id, h.status, h.changed_at FROM {} h JOIN {} o ON o.id = h.order_id WHERE {}"
            " ORDER BY h.order_id, h.changed_at"
        ).format(sql.Identifier(HISTORY_TABLE), sql.Identifier(ORDERS_TABLE), condition)
    low, high = (b.isoformat() if b else "" for b in bounds)
    label = f"{shown} table {ORDERS_TABLE if table == 'orders' else HISTORY_TABLE}, orders created in [{low}, {high})"
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            cursor = conn.execute(query, params)
            names = [column.name for column in cursor.description or []]
            raw = pd.DataFrame(cursor.fetchall(), columns=names)
    except psycopg.Error as exc:
        raise DataError(f"cannot read the database: {exc}".strip(), source=label) from exc
    return _CANONICAL[table](raw, source=label)


def _postgres(ref: str, *, rows_per_partition: int) -> PartitionedOrders:
    url, shown = connection_url(ref), mask_secrets(ref)
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            tables = {
                name
                for name in (ORDERS_TABLE, HISTORY_TABLE)
                if (row := conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()) and row[0]
            }
            if ORDERS_TABLE not in tables:
                raise DataError(f"table '{ORDERS_TABLE}' does not exist", source=shown)
            count_row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(ORDERS_TABLE))).fetchone()
            n = max(1, math.ceil((count_row[0] if count_row else 0) / rows_per_partition))
            cuts: list[datetime] = []
            if n > 1:
                quantiles = [i / n for i in range(1, n)]
                query = sql.SQL("SELECT percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY created_at) FROM {}")
                row = conn.execute(query.format(sql.Identifier(ORDERS_TABLE)), (quantiles,)).fetchone()
                cuts = sorted({c for c in (row[0] if row else []) or [] if c is not None})
    except psycopg.Error as exc:
        raise DataError(f"cannot read the database: {exc}".strip(), source=shown) from exc
    edges: list[datetime | None] = [None, *cuts, None]
    ranges: list[Range] = list(itertools.pairwise(edges))

    def frame(table: Table) -> dd.DataFrame:
        return dd.from_map(
            read_postgres_range, ranges, args=(url, shown, table), meta=empty(table), label=f"read-{table}"
        )

    return PartitionedOrders(
        orders=frame("orders"), history=frame("history") if HISTORY_TABLE in tables else None, source=shown
    )


# ---------------------------------------------------------------- entry


def read_partitioned(ref: str, *, rows_per_partition: int = ROWS_PER_PARTITION) -> PartitionedOrders:
    """The orders (and status history) behind a datasetRef, partitioned as the module docstring describes."""
    if not ref.strip():
        raise DataError("datasetRef is empty")
    ref = ref.strip()
    scheme = ref.split("://", 1)[0].lower() if "://" in ref else ""
    if scheme.startswith("postgres"):
        validate_ref(ref)
        return _postgres(ref, rows_per_partition=rows_per_partition)
    found: PartitionedOrders | None = None
    if scheme == "s3":
        found = _s3(ref)
    elif scheme in ("", "file") and local_path(ref).is_dir():
        found = _local(local_path(ref), ref=ref)
    if found is not None:
        return found
    whole = load_orders(ref)
    return PartitionedOrders(
        orders=split(whole.orders, rows_per_partition=rows_per_partition),
        history=None if whole.history is None else split(whole.history, rows_per_partition=rows_per_partition),
        source=whole.source,
    )


def split(frame: pd.DataFrame, *, rows_per_partition: int = ROWS_PER_PARTITION) -> dd.DataFrame:
    """A frame in memory as partitions of `rows_per_partition` rows, in its order."""
    return dd.from_pandas(frame, chunksize=rows_per_partition, sort=False)
