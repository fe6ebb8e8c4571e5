"""Features (osml.schema) computed from canonical orders as of each order's creation, and the training frame.

Everything is known at `created_at`, the moment the backend asks for a prediction:
- `createdHour` / `createdDayOfWeek` in UTC (Monday = 0); `timeSinceCreatedMinutes` = 0;
- `dueInMinutes` = due_at - created_at (NaN without a due date);
- `hasAssignee`; `assigneeWorkloadOpen` = orders of the same assignee created strictly before and still open at
  that instant (closed - done or canceled - strictly after it, or never), NaN without an assignee;
- categorical columns as pandas strings (NaN when absent); schema 2 adds the context columns;
- schema 3 adds `assignmentGroupWorkloadOpen`: the same count keyed by assignment group (the queue joined).
An order created later can only add events after an earlier order's creation, so it never changes that order's row.
The assignee is the one in the export (the data has no assignment time): sources assigning at creation fit best.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from osml.schema import CURRENT_SCHEMA_VERSION, SCHEMAS, feature_columns
from training.data.canonical import OrdersData
from training.data.errors import DataError
from training.labels import CanceledRule, resolution_minutes, sla_breached

# feature name -> canonical column, for the categorical features read as-is
_CATEGORICAL_SOURCES: Final = {
    "priority": "priority",
    "category": "category",
    "location": "location",
    "subcategory": "subcategory",
    "assignmentGroup": "assignment_group",
    "channel": "channel",
}
_NS_PER_MINUTE: Final = 60_000_000_000


def _utc_ns(series: pd.Series) -> np.ndarray:
    """int64 nanoseconds since the epoch (NaT -> the int64 minimum)."""
    values = series.astype("datetime64[ns, UTC]").dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")
    return values.view("int64")


def _column(orders: pd.DataFrame, name: str, dtype: str) -> pd.Series:
    if name in orders.columns:
        return orders[name]
    return pd.Series(np.nan if dtype != "datetime64[ns, UTC]" else pd.NaT, index=orders.index, dtype=dtype)


def open_workload(key: pd.Series, created: pd.Series, closed: pd.Series) -> np.ndarray:
    """Per order: orders with the same key (assignee, group) open at its creation: created < t < closed.

    NaN where the key is missing. A sweep over (key, time) events: +1 when an order opens, -1 when it closes, a query at each creation.
    At equal times closes sort before queries and queries before opens, so an order closed exactly at an
    instant is no longer open, and one created at the same instant is not yet counted. O(n log n).
    """
    codes, _ = pd.factorize(key, use_na_sentinel=True)
    created_ns = _utc_ns(created)
    closed_ns = _utc_ns(closed)
    never_closed = closed_ns == np.iinfo(np.int64).min
    assigned = codes >= 0
    # Orders closed at (or before) their creation are never open: they add no events at all.
    opens = np.flatnonzero(assigned & (never_closed | (closed_ns > created_ns)))
    closes = opens[~never_closed[opens]]
    queries = np.flatnonzero(assigned)

    group = np.concatenate([codes[opens], codes[closes], codes[queries]])
    time = np.concatenate([created_ns[opens], closed_ns[closes], created_ns[queries]])
    kind = np.concatenate(
        [np.full(len(opens), 2, np.int8), np.zeros(len(closes), np.int8), np.ones(len(queries), np.int8)]
    )
    delta = np.concatenate(
        [np.ones(len(opens), np.int64), -np.ones(len(closes), np.int64), np.zeros(len(queries), np.int64)]
    )

    order = np.lexsort((kind, time, group))
    sorted_group = group[order]
    running = np.cumsum(delta[order])
    first_of_group = np.ones(len(order), dtype=bool)
    first_of_group[1:] = sorted_group[1:] != sorted_group[:-1]
    group_start = np.maximum.accumulate(np.where(first_of_group, np.arange(len(order)), 0))
    before_group = running[group_start] - delta[order][group_start]
    counts = running - before_group

    result = np.full(len(codes), np.nan)
    is_query = order >= len(opens) + len(closes)
    result[queries[order[is_query] - len(opens) - len(closes)]] = counts[is_query]
    return result


def build_features(orders: pd.DataFrame, *, schema_version: str = CURRENT_SCHEMA_VERSION) -> pd.DataFrame:
    """One row per order (same index), columns exactly `feature_columns(schema_version)`."""
    if schema_version not in SCHEMAS:
        raise ValueError(f"unknown features schema version {schema_version!r}")
    created = orders["created_at"].astype("datetime64[ns, UTC]")
    assignee = _column(orders, "assignee_id", "str")
    done = _column(orders, "done_at", "datetime64[ns, UTC]").astype("datetime64[ns, UTC]")
    canceled = _column(orders, "canceled_at", "datetime64[ns, UTC]").astype("datetime64[ns, UTC]")
    closed = done.where(done.notna() & ~(canceled < done), canceled)
    due = _column(orders, "due_at", "datetime64[ns, UTC]").astype("datetime64[ns, UTC]")

    features = pd.DataFrame(index=orders.index)
    categorical, numeric = SCHEMAS[schema_version]
    for name in categorical:
        features[name] = _column(orders, _CATEGORICAL_SOURCES[name], "str").astype("str")
    features["createdHour"] = created.dt.hour.astype("int64")
    features["createdDayOfWeek"] = created.dt.dayofweek.astype("int64")
    features["hasAssignee"] = assignee.notna().astype("int64")
    features["assigneeWorkloadOpen"] = open_workload(assignee, created, closed)
    features["timeSinceCreatedMinutes"] = 0.0
    features["dueInMinutes"] = (due - created).dt.total_seconds() / 60.0
    if "assignmentGroupWorkloadOpen" in numeric:
        group = _column(orders, "assignment_group", "str")
        features["assignmentGroupWorkloadOpen"] = open_workload(group, created, closed)
    return features[list(feature_columns(schema_version))]


@dataclass(frozen=True)
class TrainingFrame:
    """Features and labels of the labeled orders, sorted by creation time, index 0..n-1 shared by all fields."""

    features: pd.DataFrame
    sla: pd.Series
    eta: pd.Series
    created_at: pd.Series
    order_id: pd.Series


def export_time(data: OrdersData) -> pd.Timestamp:
    """The latest instant the export saw (a lower bound of when it was taken)."""
    columns = [data.orders[c] for c in ("created_at", "done_at", "canceled_at") if c in data.orders.columns]
    if data.history is not None and len(data.history):
        columns.append(data.history["changed_at"])
    return max(pd.Timestamp(c.max()) for c in columns if c.notna().any())


def build_training_frame(
    data: OrdersData, *, schema_version: str = CURRENT_SCHEMA_VERSION, canceled: CanceledRule = "exclude"
) -> TrainingFrame:
    """Features of every order (workload needs them all), kept where at least one label is known."""
    orders = data.orders
    if orders.empty:
        raise DataError("nothing left after filtering: the dataset has no orders", source=data.source)
    features = build_features(orders, schema_version=schema_version)
    sla = sla_breached(orders, canceled=canceled, as_of=export_time(data))
    eta = resolution_minutes(orders)
    if not sla.notna().any():
        raise DataError(
            "nothing left after filtering: no order has an SLA label (needs due_at and done_at, or sla_breached;"
            f" canceled orders: {canceled})",
            source=data.source,
        )
    if not eta.notna().any():
        raise DataError("nothing left after filtering: no order has done_at after created_at", source=data.source)
    keep = (sla.notna() | eta.notna()).to_numpy()
    order = np.argsort(orders["created_at"].to_numpy()[keep], kind="stable")
    rows = np.flatnonzero(keep)[order]

    def take(series: pd.Series | pd.DataFrame) -> pd.Series | pd.DataFrame:
        return series.iloc[rows].reset_index(drop=True)

    return TrainingFrame(
        features=pd.DataFrame(take(features)),
        sla=pd.Series(take(sla)),
        eta=pd.Series(take(eta)),
        created_at=pd.Series(take(orders["created_at"])),
        order_id=pd.Series(take(orders["id"])),
    )
