"""The pipeline on schema 4: snapshots along each order's life, split and weighted by order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from osml import conventions
from osml.schema import feature_columns
from tests.conftest_training import FAST_CANDIDATES
from training.data.orders import load_orders
from training.features import build_training_frame
from training.pipeline import TrainResult, train
from training.split import time_split

pytestmark = pytest.mark.unit


def test_the_split_keeps_every_snapshot_of_an_order_in_one_slice(synthetic_csv: Path) -> None:
    frame = build_training_frame(load_orders(str(synthetic_csv)), schema_version="4")
    assert frame.order_id.duplicated().any()  # the synthetic histories give several snapshots per order
    split = time_split(frame.created_at, test_size=0.2, groups=frame.order_id)
    slices = [set(frame.order_id.iloc[rows]) for rows in (split.train, split.validation, split.test)]
    assert not (slices[0] & slices[1]) and not (slices[1] & slices[2]) and not (slices[0] & slices[2])
    for fold in split.folds:
        assert not set(frame.order_id.iloc[fold.fit]) & set(frame.order_id.iloc[fold.score])
    assert len(np.concatenate([split.train, split.validation, split.test])) == len(frame.features)


def test_weights_make_each_order_count_once_half_at_creation_and_half_over_its_life(synthetic_csv: Path) -> None:
    frame = build_training_frame(load_orders(str(synthetic_csv)), schema_version="4")
    per_order = frame.weight.groupby(frame.order_id).sum()
    assert per_order.to_numpy() == pytest.approx(np.ones(len(per_order)))
    assert frame.weight.sum() == pytest.approx(frame.order_id.nunique())
    creation = frame.elapsed_minutes == 0
    assert creation.groupby(frame.order_id).sum().eq(1).all()  # one creation snapshot per order
    snapshots = frame.order_id.map(frame.order_id.value_counts())
    assert frame.weight[creation & (snapshots > 1)].to_numpy() == pytest.approx(0.5)
    assert frame.weight[creation & (snapshots == 1)].to_numpy() == pytest.approx(1.0)
    later = frame.weight[~creation].groupby(frame.order_id[~creation])
    assert later.sum().to_numpy() == pytest.approx(0.5) and (later.nunique() == 1).all()  # spread evenly


@pytest.mark.parametrize("later", [0, 1, 3])
def test_each_order_is_fitted_on_its_creation_and_a_draw_of_its_later_snapshots(
    synthetic_csv: Path, later: int
) -> None:
    frame = build_training_frame(load_orders(str(synthetic_csv)), schema_version="4", fitted_later=later)
    fitted = frame.fit_weight > 0
    creation = frame.elapsed_minutes == 0
    assert fitted[creation].all()
    snapshots = frame.order_id.value_counts()
    fitted_later = fitted[~creation].groupby(frame.order_id[~creation]).sum()
    assert (fitted_later == np.minimum(snapshots[fitted_later.index] - 1, later)).all()
    # each order still weighs 1, half at creation and half over the later snapshots it is fitted on
    assert frame.fit_weight.groupby(frame.order_id).sum().to_numpy() == pytest.approx(1.0)
    assert frame.fit_weight[creation & frame.order_id.map(snapshots).gt(1)].to_numpy() == pytest.approx(
        0.5 if later else 1.0
    )
    assert frame.weight.equals(build_training_frame(load_orders(str(synthetic_csv)), schema_version="4").weight)


def test_the_fitted_draw_is_spread_over_an_orders_life_and_does_not_depend_on_row_order(
    synthetic_csv: Path,
) -> None:
    data = load_orders(str(synthetic_csv))
    frame = build_training_frame(data, schema_version="4", fitted_later=1)
    rank = frame.order_id.groupby(frame.order_id).cumcount()
    many = frame.order_id.map(frame.order_id.value_counts()) >= 4
    picked = rank[(frame.fit_weight > 0) & (rank > 0) & many]
    assert picked.nunique() >= 3  # not always the first change after creation
    shuffled = type(data)(data.orders.sample(frac=1.0, random_state=3), data.history, source=data.source)
    again = build_training_frame(shuffled, schema_version="4", fitted_later=1)
    key = ["order_id", "as_of"]
    mine = pd.DataFrame({"order_id": frame.order_id, "as_of": frame.as_of, "w": frame.fit_weight})
    theirs = pd.DataFrame({"order_id": again.order_id, "as_of": again.as_of, "w": again.fit_weight})
    joined = mine.merge(theirs, on=key, validate="one_to_one")
    assert len(joined) == len(mine) and (joined["w_x"] == joined["w_y"]).all()


# what the module's training run reported, in order: (fraction, message)
_PROGRESS: list[tuple[float, str]] = []


@pytest.fixture(scope="module")
def trained(synthetic_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, TrainResult]:
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    result = train(
        dataset_ref=str(synthetic_csv),
        tracking_uri=uri,
        candidates=FAST_CANDIDATES,
        tune_seconds=0,
        progress=lambda fraction, message: _PROGRESS.append((fraction, message)),
    )
    return uri, result


def test_both_tasks_train_under_the_run_and_report_progress_that_never_goes_back(
    trained: tuple[str, TrainResult],
) -> None:
    uri, result = trained
    client = MlflowClient(uri)
    experiment = client.get_run(result.run_id).info.experiment_id
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert {"sla/xgboost", "eta/xgboost"} <= {run.info.run_name for run in children}
    assert len(client.search_runs([experiment], "tags.osml.candidate = 'xgboost'")) == 2  # no stray top-level run
    fractions = [fraction for fraction, _ in _PROGRESS]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    for task in ("SLA", "ETA"):
        assert any(message.startswith(f"{task}: refitting") for _, message in _PROGRESS)
    params = client.get_run(result.run_id).data.params
    assert 0 < int(params["fitted_rows"]) < int(params["labeled_rows"]) and params["fitted_later_snapshots"] == "1"


def test_the_models_carry_the_label_rule_and_the_waiting_markers(trained: tuple[str, TrainResult]) -> None:
    uri, result = trained
    client = MlflowClient(uri)
    for name in (conventions.SLA_MODEL_NAME, conventions.ETA_MODEL_NAME):
        (version,) = client.search_model_versions(f"name = '{name}'")
        assert version.tags[conventions.TAG_SLA_LABEL_RULE] == "due_at"
        assert version.tags[conventions.TAG_SCHEMA_VERSION] == "4"
        assert "PAUS" in version.tags[conventions.TAG_WAITING_MARKERS].split(",")
    parent = client.get_run(result.run_id).data
    assert parent.tags[conventions.TAG_SLA_LABEL_RULE] == "due_at"
    assert "HOLD" in parent.params["waiting_markers"].split(",")
    # lineage counts orders and snapshots apart
    assert int(parent.params["labeled_rows"]) > int(parent.params["labeled_orders"])


def test_the_run_reports_metrics_by_prediction_point(trained: tuple[str, TrainResult]) -> None:
    uri, result = trained
    orders = dict(zip(result.by_point["point"], result.by_point["eta_orders"], strict=True))
    assert orders["at creation"] > 0 and orders["mid-life (all)"] > 0
    parent = MlflowClient(uri).get_run(result.run_id)
    for metric in ("point_creation_sla_auc", "point_mid_life_sla_auc", "point_mid_life_eta_baseline_mae_minutes"):
        assert np.isfinite(parent.data.metrics[metric])
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(result.run_id, "evaluation")}
    assert "evaluation/by_point.json" in artifacts
    plots = {a.path for a in MlflowClient(uri).list_artifacts(result.run_id, "plots")}
    assert {"plots/eta_mae_by_elapsed.png", "plots/sla_auc_by_elapsed.png"} <= plots


def test_clusters_group_orders_not_snapshots(trained: tuple[str, TrainResult]) -> None:
    uri, result = trained
    client = MlflowClient(uri)
    runs = client.search_runs(
        [client.get_run(result.run_id).info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    (clusters,) = [r for r in runs if r.info.run_name == "clusters/kmeans"]
    path = client.download_artifacts(clusters.info.run_id, "clusters/profiles.csv")
    profiles = pd.read_csv(path)
    parent = client.get_run(result.run_id).data
    assert profiles["orders"].sum() == int(parent.params["labeled_orders"])


def test_each_slice_is_logged_as_a_dataset_of_its_orders_with_the_models_columns(
    trained: tuple[str, TrainResult],
) -> None:
    uri, result = trained
    run = MlflowClient(uri).get_run(result.run_id)
    datasets = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(datasets) == {"train", "validation", "test"}
    for dataset in datasets.values():
        columns = [c["name"] for c in json.loads(dataset.schema)["mlflow_colspec"]]
        assert columns == [*feature_columns("4"), "slaBreached", "resolutionMinutes"]
    orders = sum(json.loads(d.profile)["num_rows"] for d in datasets.values())  # one row per order: its creation
    assert orders == int(run.data.params["labeled_orders"])
