"""Features (osml.schema) of canonical orders as of given instants, and the training frame built from them.

`features_as_of` is the one implementation: training, `osml features` and the SQL twin in docs/features.md all
compute these definitions (docs/features.md states each one) for an order at an instant `now`:
- `createdHour` / `createdDayOfWeek` of the creation in UTC (Monday = 0); `hasAssignee`; the categorical columns
  as pandas strings (NaN when absent);
- `timeSinceCreatedMinutes` = now - created_at; `dueInMinutes` = due_at - now (negative once overdue; NaN
  without a due date);
- `assigneeWorkloadOpen` / `assignmentGroupWorkloadOpen` (schema 3) = the other orders of the same assignee /
  assignment group open at `now` (created strictly before, closed - done or canceled - strictly after, or never);
- schema 4: `status`, `minutesInStatus`, `statusChanges`, `pauses`, `reassignments`, `reopens` from the status
  history rows at or before `now` (training.history).
Rows dated after `now` and orders created after it add nothing before `now`, so they never change a row.
The assignee is the one in the export (the data has no assignment time): sources assigning at creation fit best.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from osml.schema import CURRENT_SCHEMA_VERSION, LIFECYCLE_CATEGORICAL_V4, SCHEMAS, feature_columns
from training.data.canonical import OrdersData
from training.data.errors import DataError
from training.history import NO_ROW, WAITING_MARKERS, latest_rows, prepare_history, utc_ns, waiting_markers
from training.labels import CanceledRule, SlaLabelRule, breached_by, remaining_minutes, sla_breached, sla_label_rule
from training.snapshots import Instants, at_creation, closed_at, fitted_sample, in_stints, rank_in_order

# feature name -> canonical column, for the categorical features read as-is
_CATEGORICAL_SOURCES: Final = {
    "priority": "priority",
    "category": "category",
    "location": "location",
    "subcategory": "subcategory",
    "assignmentGroup": "assignment_group",
    "channel": "channel",
}
# schema 4 and later take snapshots along each order's life; earlier schemas know only the creation
SNAPSHOTS_PER_ORDER: Final = 10
# of which the models fit on each order's creation and this many others, drawn at random (every snapshot is
# scored): snapshots of one order share its labels, and on 100,000 synthetic orders (4.7 snapshots each) fitting
# them all took 2.3 times the rows for test scores within 0.001 AUC and 1% MAE (docs/benchmarks.md)
FITTED_LATER_SNAPSHOTS: Final = 1


def _column(orders: pd.DataFrame, name: str, dtype: str) -> pd.Series:
    if name in orders.columns:
        return orders[name]
    return pd.Series(np.nan if dtype != "datetime64[ns, UTC]" else pd.NaT, index=orders.index, dtype=dtype)


def snapshot_weights(per_order: np.ndarray, at_creation: np.ndarray) -> np.ndarray:
    """Per snapshot, of an order with `per_order` snapshots: each order weighs 1, half at its creation and half
    spread evenly over its later snapshots (all at creation when it has none).

    The product is asked once when an order is created and many times while it is open, and the evaluation by
    prediction point (training/by_point.py) counts every order once at creation and once over its life. Spread
    evenly over all of them instead (1 / snapshots each), the models fitted mid-life less well: on UCI (`make
    eval`) the mid-life remaining-time MAE was 4.9% below the elapsed-bucket baseline against 5.5% with these
    weights, while at creation the two did alike (ETA 14.5% / 14.4% below its baseline, AUC 0.815 / 0.818).
    """
    later = per_order - 1
    return np.where(later == 0, 1.0, np.where(at_creation, 0.5, 0.5 / np.maximum(later, 1)))


def check_snapshots(snapshots_per_order: int, fitted_later: int) -> None:
    """Raises ValueError unless an order keeps at least its creation and fits on at least that."""
    if snapshots_per_order < 1:
        raise ValueError(f"snapshots_per_order must be at least 1, got {snapshots_per_order}")
    if fitted_later < 0:
        raise ValueError(f"fitted_later_snapshots must be at least 0, got {fitted_later}")


def fitting_weights(per_order: np.ndarray, at_creation: np.ndarray, fitted: np.ndarray, later: int) -> np.ndarray:
    """Per snapshot, its weight in fitting: `snapshot_weights` of the `fitted` snapshots only (an order's creation
    and at most `later` of its other snapshots, training.snapshots.fitted_sample), 0 for the others.

    A random draw of an order's later snapshots, each weighing half over their count, has the weights of all of
    them in expectation: the models fit the same objective on fewer rows.
    """
    return np.where(fitted, snapshot_weights(np.minimum(per_order, later + 1), at_creation), 0.0)


def open_workload(
    key: pd.Series,
    created: pd.Series,
    closed: pd.Series,
    *,
    rows: np.ndarray | None = None,
    at_ns: np.ndarray | None = None,
) -> np.ndarray:
    """Per query: the other orders with the same key (assignee, group) open at its instant: created < t < closed.

    Queries are the orders at positions `rows` at instants `at_ns` (default: every order at its creation). NaN
    where the key is missing. A sweep over (key, time) events: +1 when an order opens, -1 when it closes, a
    query at each instant. At equal times closes sort before queries and queries before opens, so an order
    closed exactly at an instant is no longer open, and one created at the same instant is not yet counted.
    The order asking is not part of its own queue. O(n log n).
    """
    codes, _ = pd.factorize(key, use_na_sentinel=True)
    created_ns = utc_ns(created)
    closed_ns = utc_ns(closed)
    query_rows = np.arange(len(codes)) if rows is None else np.asarray(rows, dtype=np.int64)
    query_ns = created_ns[query_rows] if at_ns is None else np.asarray(at_ns, dtype=np.int64)
    never_closed = closed_ns == np.iinfo(np.int64).min
    assigned = codes >= 0
    # Orders closed at (or before) their creation are never open: they add no events at all.
    opens = np.flatnonzero(assigned & (never_closed | (closed_ns > created_ns)))
    closes = opens[~never_closed[opens]]
    asked = np.flatnonzero(assigned[query_rows])

    group = np.concatenate([codes[opens], codes[closes], codes[query_rows[asked]]])
    time = np.concatenate([created_ns[opens], closed_ns[closes], query_ns[asked]])
    kind = np.concatenate(
        [np.full(len(opens), 2, np.int8), np.zeros(len(closes), np.int8), np.ones(len(asked), np.int8)]
    )
    delta = np.concatenate(
        [np.ones(len(opens), np.int64), -np.ones(len(closes), np.int64), np.zeros(len(asked), np.int64)]
    )

    order = np.lexsort((kind, time, group))
    sorted_group = group[order]
    running = np.cumsum(delta[order])
    first_of_group = np.ones(len(order), dtype=bool)
    first_of_group[1:] = sorted_group[1:] != sorted_group[:-1]
    group_start = np.maximum.accumulate(np.where(first_of_group, np.arange(len(order)), 0))
    before_group = running[group_start] - delta[order][group_start]
    counts = running - before_group

    result = np.full(len(query_rows), np.nan)
    is_query = order >= len(opens) + len(closes)
    result[asked[order[is_query] - len(opens) - len(closes)]] = counts[is_query]
    own = query_rows[asked]
    self_open = (created_ns[own] < query_ns[asked]) & (never_closed[own] | (closed_ns[own] > query_ns[asked]))
    result[asked[self_open]] -= 1
    return result


def _minutes(delta_ns: np.ndarray, present: np.ndarray) -> np.ndarray:
    return np.where(present, delta_ns * 1e-9 / 60.0, np.nan)


def _lifecycle(
    orders: pd.DataFrame,
    history: pd.DataFrame | None,
    instants: Instants,
    *,
    waiting: Sequence[str],
    since_created: np.ndarray,
) -> dict[str, pd.Series | np.ndarray]:
    """The schema-4 fields read from the latest history row at or before each instant."""
    prepared = prepare_history(orders, history, waiting=waiting)
    latest = latest_rows(prepared, instants.order, instants.at_ns)
    found = latest != NO_ROW
    row = np.where(found, latest, 0)

    def pick(values: np.ndarray, missing: Any) -> np.ndarray:
        if not len(values):
            return np.full(len(latest), missing)
        return np.where(found, values[row], missing)

    return {
        "status": pd.Series(pick(prepared.status, None), dtype="str"),
        "minutesInStatus": np.where(found, (instants.at_ns - pick(prepared.at_ns, 0)) * 1e-9 / 60.0, since_created),
        "statusChanges": pick(prepared.earlier_rows, 0).astype(np.int64),
        "pauses": pick(prepared.pauses, 0).astype(np.int64),
        "reassignments": pick(prepared.counters["reassignment_count"], np.nan).astype(np.float64),
        "reopens": pick(prepared.counters["reopen_count"], np.nan).astype(np.float64),
    }


def features_as_of(
    orders: pd.DataFrame,
    history: pd.DataFrame | None,
    instants: Instants,
    *,
    schema_version: str = CURRENT_SCHEMA_VERSION,
    waiting: Sequence[str] = WAITING_MARKERS,
) -> pd.DataFrame:
    """One row per instant (index 0..n-1), columns exactly `feature_columns(schema_version)`.

    Only what is known at each instant is read: the order's opening fields, the history rows at or before it,
    and which other orders were open then. Schemas before "4" ignore the history.
    """
    if schema_version not in SCHEMAS:
        raise ValueError(f"unknown features schema version {schema_version!r}")
    rows, at_ns = instants.order, instants.at_ns
    created = orders["created_at"].astype("datetime64[ns, UTC]")
    assignee = _column(orders, "assignee_id", "str")
    closed = closed_at(orders)
    created_ns = utc_ns(created)[rows]
    due_ns = utc_ns(_column(orders, "due_at", "datetime64[ns, UTC]"))[rows]

    features = pd.DataFrame(index=pd.RangeIndex(len(rows)))
    categorical, numeric = SCHEMAS[schema_version]
    for name in categorical:
        if name in _CATEGORICAL_SOURCES:
            values = _column(orders, _CATEGORICAL_SOURCES[name], "str").astype("str")
            features[name] = values.iloc[rows].reset_index(drop=True)
    features["createdHour"] = created.dt.hour.to_numpy(dtype=np.int64)[rows]
    features["createdDayOfWeek"] = created.dt.dayofweek.to_numpy(dtype=np.int64)[rows]
    features["hasAssignee"] = assignee.notna().to_numpy(dtype=np.int64)[rows]
    features["assigneeWorkloadOpen"] = open_workload(assignee, created, closed, rows=rows, at_ns=at_ns)
    since_created = (at_ns - created_ns) * 1e-9 / 60.0
    features["timeSinceCreatedMinutes"] = since_created
    features["dueInMinutes"] = _minutes(due_ns - at_ns, due_ns != np.iinfo(np.int64).min)
    if "assignmentGroupWorkloadOpen" in numeric:
        group = _column(orders, "assignment_group", "str")
        features["assignmentGroupWorkloadOpen"] = open_workload(group, created, closed, rows=rows, at_ns=at_ns)
    if "status" in categorical:
        lifecycle = _lifecycle(orders, history, instants, waiting=waiting, since_created=since_created)
        for name, column in lifecycle.items():
            features[name] = column
    return features[list(feature_columns(schema_version))]


def build_features(
    orders: pd.DataFrame,
    *,
    schema_version: str = CURRENT_SCHEMA_VERSION,
    history: pd.DataFrame | None = None,
    waiting: Sequence[str] = WAITING_MARKERS,
) -> pd.DataFrame:
    """Every order at its creation (`features_as_of`), indexed like `orders`."""
    features = features_as_of(orders, history, at_creation(orders), schema_version=schema_version, waiting=waiting)
    return features.set_axis(orders.index)


@dataclass(frozen=True)
class TrainingFrame:
    """Labeled snapshots sorted by (order creation, order, instant); every series shares the index 0..n-1.

    Schemas 1-3 hold one snapshot per order, at creation (weight 1, elapsed 0); schema 4 adds one inside each stint
    in a status while the order is open (training.snapshots.in_stints), at most `snapshots_per_order` in all, every
    one scored and a sample of them fitted (`fit_weight`). All snapshots of an order share `created_at` and
    `order_id`, so a split by creation time must keep them together (`orders_of`).
    """

    features: pd.DataFrame
    sla: pd.Series  # the order's slaBreached (0/1, NaN = unlabeled), the same on each of its snapshots
    eta: pd.Series  # minutes from the instant until done (at creation: the resolution time), NaN when not done
    created_at: pd.Series  # the order's creation
    order_id: pd.Series
    as_of: pd.Series  # the prediction instant
    weight: pd.Series  # each order weighs 1 in metrics (snapshot_weights)
    fit_weight: pd.Series  # and in fitting, over a sample of its snapshots (fitting_weights; 0 = not fitted)
    elapsed_minutes: pd.Series  # as_of - created_at (timeSinceCreatedMinutes), for evaluation by life stage
    breached_by_now: pd.Series  # bool: the label is the due-date rule and due_at already passed at the instant
    waiting_markers: tuple[str, ...]  # what counted as a waiting status (record it with the model)
    sla_label_rule: SlaLabelRule  # where the SLA labels came from (record it with the model)

    def orders_of(self, rows: np.ndarray) -> np.ndarray:
        """Every snapshot (positions, in frame order) of the orders that the rows at `rows` belong to."""
        return np.flatnonzero(self.order_id.isin(self.order_id.iloc[rows]).to_numpy())

    def creation_rows(self) -> np.ndarray:
        """Positions of each order's creation snapshot (one per order, in creation order)."""
        return np.flatnonzero((self.elapsed_minutes == 0).to_numpy() & ~self.order_id.duplicated().to_numpy())


def export_time(data: OrdersData) -> pd.Timestamp:
    """The latest instant the export saw (a lower bound of when it was taken)."""
    columns = [data.orders[c] for c in ("created_at", "done_at", "canceled_at") if c in data.orders.columns]
    if data.history is not None and len(data.history):
        columns.append(data.history["changed_at"])
    return max(pd.Timestamp(c.max()) for c in columns if c.notna().any())


def build_training_frame(
    data: OrdersData,
    *,
    schema_version: str = CURRENT_SCHEMA_VERSION,
    canceled: CanceledRule = "exclude",
    waiting: Sequence[str] = WAITING_MARKERS,
    snapshots_per_order: int = SNAPSHOTS_PER_ORDER,
    fitted_later: int = FITTED_LATER_SNAPSHOTS,
    exported: pd.Timestamp | None = None,
) -> TrainingFrame:
    """Snapshots of the orders with at least one label; features see every order (workload needs them all).

    `exported` is the export time when `data` is a part of a larger export (training.distributed); default: this
    data's own `export_time`.
    """
    orders = data.orders
    if orders.empty:
        raise DataError("nothing left after filtering: the dataset has no orders", source=data.source)
    markers = waiting_markers(waiting)
    exported = export_time(data) if exported is None else exported
    sla = sla_breached(orders, canceled=canceled, as_of=exported)
    eta = remaining_minutes(orders, at_creation(orders))
    if not sla.notna().any():
        raise DataError(
            "nothing left after filtering: no order has an SLA label (needs due_at and done_at, or sla_breached;"
            f" canceled orders: {canceled})",
            source=data.source,
        )
    if not np.isfinite(eta).any():
        raise DataError("nothing left after filtering: no order has done_at after created_at", source=data.source)
    labeled = np.flatnonzero(sla.notna().to_numpy() | np.isfinite(eta))
    lifecycle = set(LIFECYCLE_CATEGORICAL_V4) <= set(feature_columns(schema_version))
    instants = (
        in_stints(orders, data.history, until=exported, rows=labeled, cap=snapshots_per_order)
        if lifecycle
        else at_creation(orders, labeled)
    )
    created_ns = utc_ns(orders["created_at"])[instants.order]
    ids = orders["id"].to_numpy(dtype=object)[instants.order]
    order = np.lexsort((instants.at_ns, instants.order, created_ns))
    instants = instants.take(order)
    features = features_as_of(orders, data.history, instants, schema_version=schema_version, waiting=markers)
    per_order = np.bincount(instants.order, minlength=len(orders))[instants.order]
    elapsed = (instants.at_ns - created_ns[order]) * 1e-9 / 60.0
    fitted = fitted_sample(ids[order], instants.order, rank_in_order(instants.order), fitted_later)
    return TrainingFrame(
        features=features,
        sla=pd.Series(sla.to_numpy()[instants.order], dtype="float64"),
        eta=pd.Series(remaining_minutes(orders, instants), dtype="float64"),
        created_at=pd.Series(orders["created_at"].to_numpy()[instants.order]).astype(orders["created_at"].dtype),
        order_id=pd.Series(ids[order], dtype=orders["id"].dtype),
        as_of=instants.as_of(),
        weight=pd.Series(snapshot_weights(per_order, elapsed == 0)),
        fit_weight=pd.Series(fitting_weights(per_order, elapsed == 0, fitted, fitted_later)),
        elapsed_minutes=pd.Series(elapsed),
        breached_by_now=pd.Series(breached_by(orders, instants)),
        waiting_markers=markers,
        sla_label_rule=sla_label_rule(orders, canceled=canceled),
    )
