"""`training.pipeline.train` on the embedded store (SQLite + local artifacts) and its input errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from osml import registry
from osml.conventions import EXPERIMENT_NAME
from tests.conftest_training import TrainPair
from training.data.errors import DataError
from training.pipeline import train

pytestmark = pytest.mark.unit


def test_embedded_store_keeps_artifacts_beside_the_database(sqlite_tracking_uri: str, trained_pair: TrainPair) -> None:
    result = trained_pair(sqlite_tracking_uri, activate=True)
    client = MlflowClient(sqlite_tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    assert experiment is not None
    store_dir = Path(sqlite_tracking_uri.removeprefix("sqlite:///")).parent
    assert experiment.artifact_location == (store_dir / "artifacts").as_uri()
    assert any((store_dir / "artifacts").rglob("MLmodel"))
    production = registry.production_pair(client)
    assert production is not None and production.model_version == result.model_version
    assert set(result.metrics) == {"auc", "f1", "maeMinutes"}
    # what /train reports is what the MLflow UI shows on the parent run
    parent = client.get_run(result.run_id).data
    assert parent.metrics["auc"] == pytest.approx(result.metrics["auc"], abs=1e-4)
    assert {"sla": parent.params["sla_model"], "eta": parent.params["eta_model"]} == result.chosen
    runs = client.search_runs([experiment.experiment_id])
    names = {run.info.run_name for run in runs if run.data.tags.get("mlflow.parentRunId") == result.run_id}
    # children live in the parent's experiment
    assert names == {"sla/xgboost", "eta/xgboost", "baseline/xgboost-plain", "clusters/kmeans"}


def test_unknown_candidate_fails_before_reading_data(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown candidates \\['lightgbm'\\]"):
        train(dataset_ref=str(tmp_path / "absent.csv"), candidates=("lightgbm",), tracking_uri="sqlite:///unused")


@pytest.mark.parametrize("test_size", [0.0, 1.0])
def test_test_size_must_be_a_fraction(tmp_path: Path, test_size: float) -> None:
    with pytest.raises(ValueError, match="test_size"):
        train(dataset_ref=str(tmp_path / "absent.csv"), test_size=test_size, tracking_uri="sqlite:///unused")


@pytest.mark.parametrize("tune_seconds", [-1.0, float("nan"), float("inf")])
def test_tune_seconds_must_be_a_finite_budget(tmp_path: Path, tune_seconds: float) -> None:
    with pytest.raises(ValueError, match="tune_seconds"):
        train(dataset_ref=str(tmp_path / "absent.csv"), tune_seconds=tune_seconds, tracking_uri="sqlite:///unused")


def test_dataset_without_labels_is_a_data_error(tmp_path: Path, sqlite_tracking_uri: str) -> None:
    csv = tmp_path / "orders.csv"
    csv.write_text("id,category,priority,created_at\na,TI,HIGH,2026-05-01T10:00:00Z\nb,TI,LOW,2026-05-01T11:00:00Z\n")
    with pytest.raises(DataError, match="nothing left after filtering"):
        train(dataset_ref=str(csv), tracking_uri=sqlite_tracking_uri)


def test_snapshots_per_order_must_keep_at_least_the_creation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="snapshots_per_order"):
        train(dataset_ref=str(tmp_path / "missing.csv"), snapshots_per_order=0)
