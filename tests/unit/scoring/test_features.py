"""Partitioned features equal `build_features` on the whole frame, though orders of one assignee or group are
spread over every partition (which `build_features` per partition gets wrong)."""

from __future__ import annotations

import dask
import pandas as pd
import pytest

from osml.schema import CURRENT_SCHEMA_VERSION, SCHEMAS, feature_columns
from scoring.features import order_features
from training.data.partitioned import split
from training.data.synthetic import generate
from training.features import build_features

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def orders() -> pd.DataFrame:
    return generate(orders=2000, seed=4).orders


def whole(orders: pd.DataFrame, schema_version: str) -> pd.DataFrame:
    features = build_features(orders, schema_version=schema_version)
    return features.assign(order_id=orders["id"].to_numpy()).set_index("order_id").sort_index()


@pytest.mark.parametrize("schema_version", sorted(SCHEMAS))
def test_partitioned_features_equal_the_whole_frames(orders: pd.DataFrame, schema_version: str) -> None:
    parts = split(orders, rows_per_partition=400)
    with dask.config.set(scheduler="synchronous"):
        got = order_features(parts, schema_version=schema_version).compute()
    assert list(got.columns) == ["order_id", *feature_columns(schema_version)]
    got = got.assign(order_id=got["order_id"].astype("str")).set_index("order_id").sort_index()
    pd.testing.assert_frame_equal(got, whole(orders, schema_version), check_dtype=False)


def test_per_partition_features_alone_would_miss_workload_across_partitions(orders: pd.DataFrame) -> None:
    parts = split(orders, rows_per_partition=400)
    naive = parts.map_partitions(build_features, schema_version=CURRENT_SCHEMA_VERSION).compute()
    naive = naive.assign(order_id=orders["id"].to_numpy()).set_index("order_id").sort_index()
    expected = whole(orders, CURRENT_SCHEMA_VERSION)
    assert not naive["assigneeWorkloadOpen"].equals(expected["assigneeWorkloadOpen"])


def test_carried_columns_travel_with_their_order(orders: pd.DataFrame) -> None:
    flagged = orders.assign(flag=orders.index % 3 == 0)
    with dask.config.set(scheduler="synchronous"):
        got = order_features(split(flagged, rows_per_partition=500), schema_version="1", carry=("flag",))
        got = got.compute()
    expected = dict(zip(flagged["id"], flagged["flag"], strict=True))
    assert all(expected[str(o)] == f for o, f in zip(got["order_id"], got["flag"], strict=True))
