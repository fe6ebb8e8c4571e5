"""Features of partitioned orders: `training.features.build_features`, run on partitions that make it exact.

Most features read only their own row. An open-workload count reads every order with the same key (assignee,
assignment group), so before it is computed the rows are shuffled by that key; an order without one shuffles by its
own id (it counts nothing and spreads evenly). Each keyed count takes one shuffle, joined back on the order id.
tests/unit/scoring/test_features.py checks the result against `build_features` on the whole frame.

This is the one place batch scoring builds features: today as of each order's creation, as training does; scoring
as of `--as-of` means calling the as-of variant of `build_features` here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import dask.dataframe as dd
import pandas as pd

from osml.schema import feature_columns
from training.features import build_features

# keyed feature -> the canonical column it counts by
KEYED_FEATURES: Final = {"assigneeWorkloadOpen": "assignee_id", "assignmentGroupWorkloadOpen": "assignment_group"}
_SHUFFLE_KEY: Final = "_shuffle_key"


def _partition_features(
    orders: pd.DataFrame, schema_version: str, columns: Sequence[str], carry: Sequence[str]
) -> pd.DataFrame:
    features = build_features(orders.drop(columns=_SHUFFLE_KEY), schema_version=schema_version)
    out = pd.concat([orders[["id", *carry]], features[list(columns)]], axis=1).rename(columns={"id": "order_id"})
    return out.reset_index(drop=True)


def _by_key(
    orders: dd.DataFrame, key: str, schema_version: str, columns: Sequence[str], carry: Sequence[str]
) -> dd.DataFrame:
    keyed = orders.assign(**{_SHUFFLE_KEY: orders[key].fillna(orders["id"])}).shuffle(on=_SHUFFLE_KEY)
    sample = _partition_features(keyed._meta, schema_version, columns, carry)
    return keyed.map_partitions(_partition_features, schema_version, columns, carry, meta=sample)


def order_features(orders: dd.DataFrame, *, schema_version: str, carry: Sequence[str] = ()) -> dd.DataFrame:
    """One row per order: `order_id`, the `carry` columns of `orders`, then `feature_columns(schema_version)`."""
    columns = feature_columns(schema_version)
    keyed = [name for name in columns if name in KEYED_FEATURES]
    first, rest = (keyed[0], keyed[1:]) if keyed else (None, [])
    local = [name for name in columns if name not in rest]
    key = KEYED_FEATURES[first] if first else "id"
    frame = _by_key(orders, key, schema_version, local, carry)
    for name in rest:
        frame = frame.merge(_by_key(orders, KEYED_FEATURES[name], schema_version, [name], ()), on="order_id")
    return frame[["order_id", *carry, *columns]]
