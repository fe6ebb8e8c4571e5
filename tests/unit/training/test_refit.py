"""The refit protocol on drifting synthetic data: reported metrics come from the model refit on train +
validation, the registered model is refit on every labelled order, and a plain baseline stands beside them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from osml import registry
from osml.conventions import EXPERIMENT_NAME
from osml.metrics import auc
from osml.runtime import FeatureEncoder
from training.candidates import DEFAULTS, Rows, Task, fit_booster
from training.data.orders import load_orders
from training.data.synthetic import generate, write_csv
from training.evaluate import regression_metrics
from training.features import build_training_frame
from training.pipeline import TrainResult, train
from training.split import time_split

pytestmark = pytest.mark.unit

LATE_SITE = "Site Opened Late"  # a location only the newest orders have: only a model that saw them knows it


@pytest.fixture(scope="module")
def drifting_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = generate(orders=4000, seed=11, drift=-1.5)
    orders = data.orders.copy()
    orders.loc[orders["created_at"] >= orders["created_at"].quantile(0.97), "location"] = LATE_SITE
    out = tmp_path_factory.mktemp("drifting")
    write_csv(replace(data, orders=orders), out)
    return out / "orders.csv"


@pytest.fixture(scope="module")
def trained(drifting_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, TrainResult]:
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    return uri, train(dataset_ref=str(drifting_csv), tracking_uri=uri, candidates=("xgboost",), tune_seconds=0)


def _children(client: MlflowClient, parent_id: str) -> dict[str, mlflow.entities.Run]:
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    return {run.info.run_name: run for run in runs}


def _train_slice_only(csv: Path, task: Task, candidate: mlflow.entities.Run) -> float:
    """The same configuration fitted on the train slice only (as the pipeline did before the refit), on the same
    rows and weights as the pipeline's (fitted on the fitted snapshots, scored on all): test AUC or MAE in
    minutes, uncalibrated (calibration can only tie scores, never raise the AUC)."""
    frame = build_training_frame(load_orders(str(csv)))
    split = time_split(frame.created_at, test_size=0.2, groups=frame.order_id)
    encoder = FeatureEncoder.fit(frame.features.iloc[split.train], schema_version="4")
    target = (frame.sla if task == "sla" else np.log1p(frame.eta)).to_numpy(dtype=float)
    scored = np.isfinite(target) & ~(frame.breached_by_now.to_numpy(dtype=bool) & (task == "sla"))
    x = encoder.encode(frame.features)

    def rows(block: np.ndarray, weight: pd.Series) -> Rows:
        weights = weight.to_numpy(dtype=float)
        kept = block[scored[block] & (weights[block] > 0)]
        return Rows(x[kept], target[kept], weights[kept], np.zeros(len(kept)))

    train_rows, test_rows = rows(split.train, frame.fit_weight), rows(split.test, frame.weight)
    # the rounds the pipeline's growth law gives for the train slice
    params = candidate.data.params
    share = len(train_rows) / int(params["evaluation_rows"])
    rounds = max(1, round(int(params["evaluation_rounds"]) * share ** float(params["rounds_growth"])))
    booster = fit_booster(task, DEFAULTS[task], encoder, train_rows, seed=42, rounds=rounds).booster
    predicted = np.asarray(booster.inplace_predict(test_rows.x), dtype=np.float64)
    if task == "sla":
        return auc(test_rows.y, predicted, test_rows.w)
    minutes = np.clip(np.expm1(predicted), 0.0, None)
    return regression_metrics(np.expm1(test_rows.y), minutes, test_rows.w)["mae_minutes"]


def test_the_refit_beats_the_train_slice_only_model_on_the_newest_orders(
    drifting_csv: Path, trained: tuple[str, TrainResult]
) -> None:
    uri, result = trained
    children = _children(MlflowClient(uri), result.run_id)
    assert result.report["auc"] > _train_slice_only(drifting_csv, "sla", children["sla/xgboost"])
    assert result.report["mae_minutes"] < _train_slice_only(drifting_csv, "eta", children["eta/xgboost"])


def test_the_served_model_saw_every_labelled_order(trained: tuple[str, TrainResult]) -> None:
    uri, result = trained
    client = MlflowClient(uri)
    params = client.get_run(result.run_id).data.params
    assert params["served_rows"] == params["labeled_rows"]
    assert int(params["evaluation_rows"]) == int(params["train_rows"]) + int(params["validation_rows"])
    assert params["served_to"] == params["test_to"] and params["evaluation_to"] < params["test_from"]
    mlflow.set_tracking_uri(uri)
    pair = registry.find_pair(client, result.model_version)
    for model_uri in (pair.sla_uri, pair.eta_uri):
        encoder = mlflow.pyfunc.load_model(model_uri).unwrap_python_model().model.encoder
        assert LATE_SITE in encoder.vocabularies[encoder.categorical.index("location")]


def test_a_plain_baseline_stands_beside_the_run_and_is_never_registered(trained: tuple[str, TrainResult]) -> None:
    uri, result = trained
    client = MlflowClient(uri)
    children = _children(client, result.run_id)
    plain = children["baseline/xgboost-plain"]
    assert {"auc", "f1", "mae_minutes", "median_ae_minutes", "val_auc", "val_mae_minutes"} <= set(plain.data.metrics)
    parent = client.get_run(result.run_id).data
    for metric in ("auc", "f1", "mae_minutes"):
        assert parent.metrics[f"baseline_plain_{metric}"] == pytest.approx(plain.data.metrics[metric])
    beats = parent.metrics["auc"] >= plain.data.metrics["auc"] and (
        parent.metrics["mae_minutes"] <= plain.data.metrics["mae_minutes"]
    )
    assert parent.tags["osml.beats_plain"] == str(beats).lower()
    registered = {mv.run_id for mv in client.search_model_versions()}
    assert plain.info.run_id not in registered
    assert {children["sla/xgboost"].info.run_id, children["eta/xgboost"].info.run_id} == registered
