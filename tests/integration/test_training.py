"""Training against a real `mlflow server` (fresh PostgreSQL backend store): runs, registry, CLI, MLproject,
and `mlflow models serve` answering the seed payload."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from osml import registry
from osml.conventions import (
    EXPERIMENT_NAME,
    MODEL_VERSION_PATTERN,
    PRODUCTION_ALIAS,
    SLA_MODEL_NAME,
    TAG_DATASET_REF,
    TAG_MODEL_VERSION,
    TAG_SCHEMA_VERSION,
    TAG_TRAINED_AT,
)
from osml.predictor import OrderPredictor
from osml.schema import CURRENT_SCHEMA_VERSION
from tests.conftest_training import TrainPair
from tests.services import MlflowServer
from tests.support import (
    REPO_ROOT,
    SEED_FEATURES,
    VENV_BIN,
    free_port,
    http_ok,
    start_process,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.integration


def _env(server: MlflowServer) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": server.url, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}


def _child_runs(client: MlflowClient, parent_id: str) -> dict[str, mlflow.entities.Run]:
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    return {run.info.run_name: run for run in runs}


def test_an_interrupt_ends_osml_train_without_waiting_for_the_other_task(synthetic_csv: Path, tmp_path: Path) -> None:
    """Ctrl-C while both tasks fit ends the run there: the ETA, on its own thread, never reaches its served refit
    (its search alone has 30 s left), nothing is registered and the run is not left running."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log = tmp_path / "train.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [str(VENV_BIN / "osml"), "train", "--dataset", str(synthetic_csv), "--tune-seconds", "60"],
            env={**os.environ, "MLFLOW_TRACKING_URI": uri},
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
            # a shell without job control starts background children with SIGINT ignored
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        wait_until(
            lambda: all(f"{task}: searching" in log.read_text() for task in ("SLA", "ETA")) or proc.poll() is not None,
            timeout=300,
            what=f"both searches started ({log})",
        )
        assert proc.poll() is None, log.read_text()[-3000:]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == -signal.SIGINT, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "KeyboardInterrupt" in log.read_text()
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert not any(run.data.params.get("served_rounds") for run in runs if run.info.run_name.startswith("eta/"))
    assert all(run.info.status != "RUNNING" for run in runs if "mlflow.parentRunId" not in run.data.tags)
    assert not client.search_registered_models()


def test_cli_trains_every_candidate_registers_and_activates(
    mlflow_tracking_server: MlflowServer, synthetic_csv: Path
) -> None:
    proc = subprocess.run(
        [str(VENV_BIN / "osml"), "train", "--dataset", str(synthetic_csv), "--activate", "--tune-seconds", "6"],
        env=_env(mlflow_tracking_server),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(last) == {"modelVersion", "metrics"} and set(last["metrics"]) == {"auc", "f1", "maeMinutes"}
    assert MODEL_VERSION_PATTERN.match(last["modelVersion"])
    assert 0.5 < last["metrics"]["auc"] <= 1.0 and last["metrics"]["maeMinutes"] > 0
    assert "[100%]" in proc.stderr  # progress goes to stderr

    client = MlflowClient(mlflow_tracking_server.url)
    pair = registry.production_pair(client)
    assert pair is not None and pair.model_version == last["modelVersion"]
    for mv in (pair.sla, pair.eta):
        assert mv.tags[TAG_MODEL_VERSION] == last["modelVersion"]
        assert mv.tags[TAG_SCHEMA_VERSION] == CURRENT_SCHEMA_VERSION
        assert mv.tags[TAG_DATASET_REF] == str(synthetic_csv)
        assert mv.tags[TAG_TRAINED_AT].endswith("Z")
        assert PRODUCTION_ALIAS in client.get_model_version(mv.name, mv.version).aliases

    parent = client.get_run(pair.sla.run_id).data.tags["mlflow.parentRunId"]
    children = _child_runs(client, parent)
    assert set(children) == {
        "sla/xgboost",
        "sla/xgboost_tuned",
        "eta/xgboost",
        "eta/xgboost_tuned",
        "baseline/xgboost-plain",
        "clusters/kmeans",
    }
    for name, run in children.items():
        expected = {"sla": "auc", "eta": "mae_minutes", "baseline": "auc", "clusters": "silhouette"}[name.split("/")[0]]
        assert expected in run.data.metrics, name
    for task in ("sla", "eta"):  # every configuration tried is in one table of the tuned run
        tuned = children[f"{task}/xgboost_tuned"].info.run_id
        assert "tuning/trials.json" in {a.path for a in client.list_artifacts(tuned, "tuning")}
        assert children[f"{task}/xgboost_tuned"].data.metrics["tuning_trials"] >= 1
    selected = [name for name, run in children.items() if run.data.tags.get("osml.selected") == "true"]
    assert len(selected) == 2
    parent_run = client.get_run(parent)
    for metric in ("auc", "f1", "precision", "recall", "brier", "mae_minutes", "rmse_minutes", "silhouette"):
        assert metric in parent_run.data.metrics
        if metric != "silhouette":
            assert f"baseline_{metric}" in parent_run.data.metrics
            assert f"baseline_plain_{metric}" in parent_run.data.metrics
    assert parent_run.data.tags["osml.beats_plain"] in {"true", "false"}
    params = parent_run.data.params
    assert params["served_rows"] == params["labeled_rows"] and params["tune_seconds"] == "6"
    assert parent_run.data.metrics["auc"] == pytest.approx(last["metrics"]["auc"], abs=1e-4)
    assert {i.tags[0].value for i in parent_run.inputs.dataset_inputs} == {"train", "validation", "test"}
    winner = children[next(n for n in selected if n.startswith("sla/"))]
    artifacts = {a.path for a in client.list_artifacts(winner.info.run_id, "plots")}
    assert {"plots/sla_roc_pr.png", "plots/sla_calibration.png", "plots/sla_confusion.png"} <= artifacts


def test_fast_pairs_get_sequential_versions_and_load_as_predictors(
    mlflow_tracking_server: MlflowServer, trained_pair: TrainPair
) -> None:
    client = MlflowClient(mlflow_tracking_server.url)
    first = trained_pair(mlflow_tracking_server.url, activate=True)
    second = trained_pair(mlflow_tracking_server.url, activate=False)
    assert second.model_version > first.model_version
    production = registry.production_pair(client)
    assert production is not None and production.model_version == first.model_version
    pair = registry.find_pair(client, second.model_version)
    assert pair.schema_version == CURRENT_SCHEMA_VERSION

    mlflow.set_tracking_uri(mlflow_tracking_server.url)
    sla_pyfunc = mlflow.pyfunc.load_model(pair.sla_uri)
    sla = sla_pyfunc.unwrap_python_model().model
    eta = mlflow.pyfunc.load_model(pair.eta_uri).unwrap_python_model().model
    assert isinstance(sla, OrderPredictor) and isinstance(eta, OrderPredictor)
    risk = float(sla.predict([SEED_FEATURES])[0])
    assert 0.0 <= risk <= 1.0 and eta.predict([SEED_FEATURES])[0] >= 0.0
    via_pyfunc = sla_pyfunc.predict(pd.DataFrame([SEED_FEATURES]))
    assert float(via_pyfunc[0]) == pytest.approx(risk)


def test_mlproject_entry_point_trains_through_mlflow_run(
    mlflow_tracking_server: MlflowServer, synthetic_csv: Path
) -> None:
    client = MlflowClient(mlflow_tracking_server.url)
    before = {p.model_version for p in registry.list_pairs(client)}
    proc = subprocess.run(
        [
            str(VENV_BIN / "mlflow"),
            "run",
            ".",
            "-e",
            "train",
            "-P",
            f"dataset={synthetic_csv}",
            "-P",
            "candidates=xgboost",
            "-P",
            "random_state=7",
            "-P",
            "tune_seconds=0",
            "--env-manager",
            "local",
            "--experiment-name",
            EXPERIMENT_NAME,
        ],
        env=_env(mlflow_tracking_server),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # `mlflow run` may print its own run links after the command's output: take the command's JSON line
    last = json.loads(next(line for line in reversed(proc.stdout.splitlines()) if line.startswith("{")))
    assert last["modelVersion"] not in before
    assert last["modelVersion"] in {p.model_version for p in registry.list_pairs(client)}


def test_mlflow_models_serve_answers_the_seed_payload(
    mlflow_tracking_server: MlflowServer, trained_pair: TrainPair, tmp_path: Path
) -> None:
    trained_pair(mlflow_tracking_server.url, activate=True)
    port = free_port()
    proc = start_process(
        [
            str(VENV_BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{SLA_MODEL_NAME}@{PRODUCTION_ALIAS}",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        log=tmp_path / "models-serve.log",
        env=_env(mlflow_tracking_server),  # it execs `uvicorn`: the venv's bin must be on PATH
    )

    def ready() -> bool:
        assert proc.poll() is None, (tmp_path / "models-serve.log").read_text()[-3000:]
        return http_ok(f"http://127.0.0.1:{port}/ping")

    try:
        wait_until(ready, timeout=120, what="mlflow models serve")
        response = httpx.post(
            f"http://127.0.0.1:{port}/invocations", json={"dataframe_records": [SEED_FEATURES]}, timeout=30
        )
        assert response.status_code == 200, response.text
        (risk,) = response.json()["predictions"]
        assert 0.0 <= float(risk) <= 1.0
        bad = httpx.post(
            f"http://127.0.0.1:{port}/invocations", json={"dataframe_records": [{"category": "TI"}]}, timeout=30
        )
        assert bad.status_code == 400  # required features are enforced by the logged signature
    finally:
        stop_process(proc)
