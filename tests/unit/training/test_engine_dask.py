"""`--engine dask`: the training frame built on partitions equals the single-process frame row for row, and a run on
a 2-worker LocalCluster registers a pair the facade's loader serves, predicting like the single-process pair
trained on the same orders.

Why a tolerance and not equality: `xgboost.dask` merges each worker's quantile sketch into the histogram cuts and
draws the row subsample (`subsample` 0.8) per worker, so its trees are not the single-process trees, and rounds
found by early stopping may differ by a few. On these 1,500 orders that moves test AUC by about a hundredth and a
typical order's risk by a few points; a pair that learnt something else (wrong labels, a shuffled feature, a broken
split) misses both bounds by far.
"""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from osml import conventions, registry
from serving.model_store import ActivePair, RegistryLoader
from training.cluster import DaskSettings
from training.data.partitioned import PartitionedOrders, split
from training.data.synthetic import generate, write_csv
from training.distributed.engine import SKIPPED, train_dask
from training.distributed.frame import SNAP, build_distributed_frame
from training.features import build_training_frame
from training.pipeline import TrainResult, _records, train

pytestmark = pytest.mark.unit

ORDERS = 1500
AUC_TOLERANCE = 0.03
MEDIAN_RISK_DIFFERENCE = 0.05
MEDIAN_ETA_RATIO_DIFFERENCE = 0.15


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same orders as a CSV pair and as 4 Parquet parts of orders with their history split differently."""
    root = tmp_path_factory.mktemp("engine-dask")
    data = generate(orders=ORDERS, seed=7)
    assert data.history is not None
    write_csv(data, root / "csv")
    (root / "parts" / "orders").mkdir(parents=True)
    (root / "parts" / "order_status_history").mkdir(parents=True)
    for i, rows in enumerate(np.array_split(np.arange(ORDERS), 4)):
        data.orders.iloc[rows].to_parquet(root / "parts" / "orders" / f"part.{i}.parquet", index=False)
    for i, rows in enumerate(np.array_split(np.arange(len(data.history)), 3)):
        data.history.iloc[rows].to_parquet(root / "parts" / "order_status_history" / f"part.{i}.parquet", index=False)
    return root / "csv", root / "parts"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, dataset: tuple[Path, Path]) -> dict[str, tuple[str, TrainResult]]:
    root = tmp_path_factory.mktemp("engine-dask-stores")
    single_uri, dask_uri = f"sqlite:///{root / 'single.db'}", f"sqlite:///{root / 'dask.db'}"
    whole, parts = dataset
    single = train(dataset_ref=str(whole), tracking_uri=single_uri, activate=True, candidates=("xgboost",))
    distributed = train_dask(
        dataset_ref=str(parts), cluster=DaskSettings(workers=2), tracking_uri=dask_uri, activate=True
    )
    return {"single": (single_uri, single), "dask": (dask_uri, distributed)}


def _served(uri: str, cache: Path) -> ActivePair:
    pair = registry.production_pair(MlflowClient(uri, registry_uri=uri))
    assert pair is not None
    cache.mkdir()
    return RegistryLoader(tracking_uri=uri, cache_dir=cache)(pair)


def _as_single_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_index(["order_id", SNAP]).sort_index()


def test_the_partitioned_frame_equals_the_single_process_frame() -> None:
    data = generate(orders=1200, seed=4)
    assert data.history is not None
    # history parts do not line up with order parts: an order's history is spread over several of them
    parts = PartitionedOrders(
        split(data.orders, rows_per_partition=300), split(data.history, rows_per_partition=1000), ""
    )
    with dask.config.set(scheduler="synchronous"):
        built = build_distributed_frame(parts, schema_version="4", snapshots_per_order=10, fitted_later=1)
        got = _as_single_frame(built.rows.compute())
    whole = build_training_frame(data)
    expected = whole.features.assign(
        order_id=whole.order_id.astype("str").to_numpy(),
        **{name: getattr(whole, name).to_numpy() for name in ("sla", "eta", "created_at", "weight", "fit_weight")},
        elapsed_minutes=whole.elapsed_minutes.to_numpy(),
        breached_by_now=whole.breached_by_now.to_numpy(),
    )
    expected[SNAP] = expected.groupby("order_id", sort=False).cumcount()
    expected = _as_single_frame(expected)
    assert len(got) == len(expected) > len(data.orders)  # snapshots along each order's life, not one per order
    pd.testing.assert_frame_equal(got, expected[got.columns], check_dtype=False)
    assert built.sla_label_rule == whole.sla_label_rule and built.waiting_markers == whole.waiting_markers


def test_a_dask_run_registers_a_pair_the_facade_serves(
    trained: dict[str, tuple[str, TrainResult]], tmp_path: Path
) -> None:
    uri, result = trained["dask"]
    active = _served(uri, tmp_path / "cache")
    assert active.model_version == result.model_version
    client = MlflowClient(uri, registry_uri=uri)
    parent = client.get_run(result.run_id)
    assert parent.data.tags["osml.engine"] == "dask"
    assert f"{'xgboost_tuned'}: {SKIPPED['xgboost_tuned']}" in parent.data.tags["osml.skipped"]
    assert parent.data.params["sla_model"] == parent.data.params["eta_model"] == "xgboost"
    single_uri, single = trained["single"]
    single_tags = MlflowClient(single_uri, registry_uri=single_uri).get_run(single.run_id).data.tags
    for tag in (conventions.TAG_SCHEMA_VERSION, conventions.TAG_SLA_LABEL_RULE, "osml.metrics_from"):
        assert parent.data.tags[tag] == single_tags[tag]
    assert set(single.metrics) == set(result.metrics)


def test_dask_predictions_agree_with_the_single_process_pair(
    trained: dict[str, tuple[str, TrainResult]], dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    (single_uri, single), (dask_uri, distributed) = trained["single"], trained["dask"]
    assert abs(single.metrics["auc"] - distributed.metrics["auc"]) <= AUC_TOLERANCE
    one = _served(single_uri, tmp_path / "single")
    two = _served(dask_uri, tmp_path / "dask")
    # orders neither pair has seen, as /predict bodies
    sample = _records(build_training_frame(generate(orders=300, seed=99)).features)
    risk_one, risk_two = one.sla.predict(sample), two.sla.predict(sample)
    eta_one, eta_two = one.eta.predict(sample), two.eta.predict(sample)
    risk = np.abs(risk_one - risk_two)
    assert float(np.median(risk)) <= MEDIAN_RISK_DIFFERENCE
    assert float(np.median(np.abs(eta_two - eta_one) / np.maximum(eta_one, 1.0))) <= MEDIAN_ETA_RATIO_DIFFERENCE
    assert np.corrcoef(risk_one, risk_two)[0, 1] > 0.9
