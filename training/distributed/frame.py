"""The training frame of a partitioned export (training/data/partitioned.py) built on Dask by the single-process code.

1. Orders and their status history are shuffled by a hash of the order id into the same partitions, so each
   order's whole history is local, and `training.features.build_training_frame` runs on each partition as it runs
   on a whole export, given the export's end (labels and the last open stint depend on it).
2. The open-workload counts read every order of the same key (assignee, assignment group): per keyed feature, the
   orders (when they opened and closed) and the snapshots asking (their instants) are shuffled together by the key
   and `training.features.open_workload` counts them; the counts travel back to their snapshot's partition (the
   same order-id hash) and replace the partition's local counts.

The result is one row per snapshot: `order_id`, `_snap` (the snapshot's rank in its order: 0 = creation), the
features of `feature_columns(schema)`, the labels and weights of `training.features.TrainingFrame`. Row order is
not the single-process frame's; tests/unit/training/test_engine_dask.py checks the rows equal it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import dask.dataframe as dd
import numpy as np
import pandas as pd

from osml.schema import feature_columns
from scoring.features import KEYED_FEATURES
from training.data.canonical import OrdersData
from training.data.errors import DataError
from training.data.partitioned import PartitionedOrders, empty
from training.features import build_training_frame, export_time, open_workload
from training.history import WAITING_MARKERS, utc_ns
from training.labels import CanceledRule, SlaLabelRule, is_canceled, sla_breached, sla_label_rule
from training.snapshots import closed_at

PART: Final = "_part"  # the order id's hash bucket: orders, history and snapshots of an order share it
SNAP: Final = "_snap"
_KEY: Final = "_key"
_AT_NS: Final = "_at_ns"
LABEL_COLUMNS: Final = ("sla", "eta", "created_at", "weight", "fit_weight", "elapsed_minutes", "breached_by_now")


@dataclass(frozen=True)
class DistributedFrame:
    """Snapshots as one Dask dataframe (columns: see the module docstring) and what holds for the whole export."""

    rows: dd.DataFrame
    sla_label_rule: SlaLabelRule
    waiting_markers: tuple[str, ...]
    orders: int  # every order of the export, labelled or not


def _bucket(ids: pd.Series, buckets: int) -> pd.Series:
    hashed = pd.util.hash_pandas_object(ids.astype("str"), index=False).to_numpy()
    return pd.Series((hashed % np.uint64(buckets)).astype(np.int64), index=ids.index)


def _snapshots(
    orders: pd.DataFrame,
    history: pd.DataFrame | None,
    *,
    exported: pd.Timestamp,
    schema_version: str,
    canceled: CanceledRule,
    waiting: Sequence[str],
    snapshots_per_order: int,
    fitted_later: int,
    keys: Sequence[str],
    buckets: int,
    empty_result: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One partition's snapshots, built by `build_training_frame` (its workload counts are local, fixed later)."""
    orders = orders.drop(columns=PART, errors="ignore").reset_index(drop=True)
    history = None if history is None else history.drop(columns=PART, errors="ignore").reset_index(drop=True)
    try:
        frame = build_training_frame(
            OrdersData(orders, history, source=""),
            schema_version=schema_version,
            canceled=canceled,
            waiting=waiting,
            snapshots_per_order=snapshots_per_order,
            fitted_later=fitted_later,
            exported=exported,
        )
    except DataError:
        if empty_result is None:
            raise
        # a partition without labels adds no snapshot; the whole export's emptiness is checked once, after
        return empty_result
    out = frame.features.copy()
    ids = frame.order_id.astype("str")
    out.insert(0, "order_id", ids)
    out.insert(1, SNAP, ids.groupby(ids, sort=False).cumcount().to_numpy(dtype=np.int64))
    out.insert(2, PART, _bucket(ids, buckets).to_numpy())
    for name in LABEL_COLUMNS:
        out[name] = getattr(frame, name).to_numpy()
    out[_AT_NS] = utc_ns(frame.as_of)
    position = pd.Index(orders["id"].astype("str")).get_indexer(pd.Index(ids))
    for key in keys:
        out[f"_{key}"] = orders[key].astype("str").to_numpy()[position]
    return out


def _meta_of(
    schema_version: str, keys: Sequence[str], *, canceled: CanceledRule, waiting: Sequence[str]
) -> pd.DataFrame:
    """`_snapshots` run on a tiny real export: its dtypes are those of every partition."""
    from training.data.synthetic import generate

    tiny = generate(orders=40, seed=0)
    sample = _snapshots(
        tiny.orders,
        tiny.history,
        exported=export_time(tiny),
        schema_version=schema_version,
        canceled=canceled,
        waiting=waiting,
        snapshots_per_order=2,
        fitted_later=1,
        keys=keys,
        buckets=1,
    )
    return sample.iloc[:0]


def _asking(
    key: pd.Series, ids: pd.Series, value: pd.Series, times: dict[str, pd.Series], **ints: np.ndarray
) -> pd.DataFrame:
    """Rows of the workload shuffle: orders (opening, closing) and queries (an instant), in one frame per key."""
    frame = pd.DataFrame(
        {_KEY: value.where(value.notna(), ids), "order_id": ids, "value": value}
        | {name: times[name].astype("datetime64[ns, UTC]") for name in ("created_at", "done_at", "canceled_at")}
    ).reset_index(drop=True)
    return frame.assign(**ints)


def _events(orders: pd.DataFrame, key: str) -> pd.DataFrame:
    """Each order as a source of workload events: its key (its own id when it has none), opening and closing."""
    n = len(orders)
    times = {name: orders[name] for name in ("created_at", "done_at", "canceled_at")}
    zeros = np.zeros(n, dtype=np.int64)
    ids = orders["id"].astype("str")
    return _asking(ids, ids, orders[key].astype("str"), times, **{SNAP: zeros - 1, _AT_NS: zeros, PART: zeros})


def _queries(snapshots: pd.DataFrame, key: str) -> pd.DataFrame:
    """Each snapshot asking for the open orders of its order's key at its instant."""
    nat = pd.Series(pd.NaT, index=snapshots.index, dtype="datetime64[ns, UTC]")
    ids = snapshots["order_id"].astype("str")
    columns = {name: snapshots[name].to_numpy(dtype=np.int64) for name in (SNAP, _AT_NS, PART)}
    times = dict.fromkeys(("created_at", "done_at", "canceled_at"), nat)
    return _asking(ids, ids, snapshots[f"_{key}"].astype("str"), times, **columns)


def _count(rows: pd.DataFrame, feature: str) -> pd.DataFrame:
    """Every order and every query of some keys: `open_workload` of each query, keyed by its snapshot."""
    is_order = rows[SNAP].to_numpy() < 0
    orders = rows[is_order].reset_index(drop=True)
    asks = rows[~is_order]
    positions = pd.Index(orders["order_id"]).get_indexer(pd.Index(asks["order_id"]))
    counts = open_workload(
        orders["value"],
        orders["created_at"],
        closed_at(orders),
        rows=positions,
        at_ns=asks[_AT_NS].to_numpy(dtype=np.int64),
    )
    return pd.DataFrame(
        {
            "order_id": asks["order_id"].to_numpy(),
            SNAP: asks[SNAP].to_numpy(dtype=np.int64),
            PART: asks[PART].to_numpy(dtype=np.int64),
            feature: counts,
        }
    )


def _join_counts(snapshots: pd.DataFrame, *counts: pd.DataFrame) -> pd.DataFrame:
    """The partition's snapshots with their workload counts replaced by the global ones."""
    out = snapshots
    for found in counts:
        feature = found.columns[-1]
        keyed = found.drop(columns=PART).set_index(["order_id", SNAP])[feature]
        index = pd.MultiIndex.from_arrays([out["order_id"], out[SNAP]])
        out = out.assign(**{feature: keyed.reindex(index).to_numpy()})
    return out


def _label_rule(orders: pd.DataFrame, canceled: CanceledRule) -> pd.DataFrame:
    """The partition's `sla_label_rule`, or none when it labels no order."""
    labelled = bool((sla_breached(orders, canceled=canceled).notna() & ~is_canceled(orders)).any())
    return pd.DataFrame({"rule": [sla_label_rule(orders, canceled=canceled)] if labelled else []}, dtype="str")


def _export_end(orders: pd.DataFrame, history: pd.DataFrame | None) -> pd.DataFrame:
    known = orders[["created_at", "done_at", "canceled_at"]].notna().to_numpy().any()
    if not known and (history is None or not history["changed_at"].notna().any()):
        return pd.DataFrame({"end": pd.Series([], dtype="datetime64[ns, UTC]")})
    return pd.DataFrame({"end": pd.Series([export_time(OrdersData(orders, history, ""))])})


def build_distributed_frame(
    data: PartitionedOrders,
    *,
    schema_version: str,
    snapshots_per_order: int,
    fitted_later: int,
    canceled: CanceledRule = "exclude",
    waiting: Sequence[str] = WAITING_MARKERS,
) -> DistributedFrame:
    """The training frame of `data` as Dask dataframes (not yet computed, except the export-wide facts)."""
    from training.history import waiting_markers

    markers = waiting_markers(waiting)
    buckets = max(data.orders.npartitions, 1)
    orders = data.orders.assign(**{PART: data.orders["id"].map_partitions(_bucket, buckets, meta=("id", "int64"))})
    history = None
    if data.history is not None:
        bucket = data.history["order_id"].map_partitions(_bucket, buckets, meta=("order_id", "int64"))
        history = data.history.assign(**{PART: bucket}).shuffle(on=PART, npartitions=buckets)
    orders = orders.shuffle(on=PART, npartitions=buckets)

    ends = dd.map_partitions(
        _export_end,
        orders,
        history,
        meta=pd.DataFrame({"end": pd.Series([], dtype="datetime64[ns, UTC]")}),
        align_dataframes=False,
    )
    rules = orders.map_partitions(_label_rule, canceled, meta=pd.DataFrame({"rule": pd.Series([], dtype="str")}))
    counted, end, found_rules = dd.compute(orders.shape[0], ends["end"].max(), rules["rule"].unique())
    if not counted:
        raise DataError("nothing left after filtering: the dataset has no orders", source=data.source)
    exported = pd.Timestamp(end)
    kinds = set(found_rules)
    rule: SlaLabelRule = "mixed" if len(kinds) > 1 else (kinds.pop() if kinds else "due_at")

    keyed = {f: KEYED_FEATURES[f] for f in feature_columns(schema_version) if f in KEYED_FEATURES}
    keys = tuple(dict.fromkeys(keyed.values()))
    meta = _meta_of(schema_version, keys, canceled=canceled, waiting=markers)
    snapshots = dd.map_partitions(
        _snapshots,
        orders,
        history,
        exported=exported,
        schema_version=schema_version,
        canceled=canceled,
        waiting=markers,
        snapshots_per_order=snapshots_per_order,
        fitted_later=fitted_later,
        keys=keys,
        buckets=buckets,
        empty_result=meta,
        meta=meta,
        align_dataframes=False,
    )
    event_meta = _events(empty("orders"), "assignee_id")
    counts = []
    for feature, key in keyed.items():
        asking = dd.concat(
            [
                data.orders.map_partitions(_events, key, meta=event_meta),
                snapshots.map_partitions(_queries, key, meta=event_meta),
            ]
        )
        found = asking.shuffle(on=_KEY).map_partitions(_count, feature, meta=_count(event_meta, feature))
        counts.append(found.shuffle(on=PART, npartitions=buckets))
    joined = dd.map_partitions(_join_counts, snapshots, *counts, meta=meta, align_dataframes=False)
    rows = joined.drop(columns=[_AT_NS, PART, *(f"_{k}" for k in keys)])
    return DistributedFrame(rows=rows, sla_label_rule=rule, waiting_markers=markers, orders=int(counted))
