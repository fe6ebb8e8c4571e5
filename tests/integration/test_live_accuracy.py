"""Live accuracy end to end on the real services: a labelled slice of orders is predicted through the worker (real
facade, RabbitMQ, PostgreSQL), its outcomes land in the backend's `orders` table, and `osml evaluate-live` reports
the AUC and MAE that the same orders give when scored here independently (sklearn on the joined rows).
"""

from __future__ import annotations

import math
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import roc_auc_score

from osml.conventions import EXPERIMENT_NAME, LIVE_EXPERIMENT_NAME
from tests.conftest_worker import Pipeline
from tests.support import VENV_BIN, free_port, start_process, stop_process, wait_until
from training.data.canonical import OrdersData
from training.data.postgres import load_into_postgres
from training.data.synthetic import generate
from training.features import build_features
from worker.events import PredictionRequested

pytestmark = pytest.mark.integration

SLICE_ORDERS = 300

# the event path's fixtures (`facade`, `pipeline`) come from tests/conftest_worker.py


def _labelled_slice() -> tuple[pd.DataFrame, list[bytes]]:
    """Orders the facade's pair never saw (another seed), with uuid ids, and one REQUESTED event each."""
    orders = generate(orders=SLICE_ORDERS, seed=11).orders.copy()
    orders["id"] = [str(uuid.UUID(int=int(i) + 1, version=4)) for i in range(len(orders))]
    features = build_features(orders)
    bodies = []
    for order_id, row in zip(orders["id"], features.to_dict("records"), strict=True):
        event = PredictionRequested(
            eventId=str(uuid.uuid4()),
            type="ML_PREDICTION_REQUESTED",
            occurredAt=datetime.now(UTC),
            orderId=order_id,
            actorId="backend",
            data={"features": {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}},
        )
        bodies.append(event.model_dump_json().encode())
    return orders, bodies


def _outcomes_at_prediction_time(orders: pd.DataFrame, predicted_at: dict[str, datetime]) -> pd.DataFrame:
    """The orders moved in time so that each was created when it was predicted: its features (taken at creation)
    then describe the instant of its prediction, and its due / done / cancel times keep their distances."""
    shifted = orders.copy()
    offset = pd.to_datetime(shifted["id"].map(predicted_at), utc=True) - shifted["created_at"]
    for column in ("created_at", "due_at", "done_at", "canceled_at"):
        shifted[column] = shifted[column] + offset
    return shifted


def _independent_figures(pipe: Pipeline, as_of: datetime) -> dict[str, float]:
    """AUC and MAE from the joined rows, with the rules written out here rather than taken from the code."""
    rows = pipe.query(
        "SELECT p.sla_risk::float8, p.eta_minutes, p.predicted_at, o.due_at, o.done_at, o.canceled_at"
        " FROM orders_prediction p JOIN orders o ON o.id = p.order_id::text"
    )
    labels, risks, errors = [], [], []
    for sla_risk, eta_minutes, predicted, due, done, canceled in rows:
        done_known = done is not None and done <= as_of
        canceled_known = canceled is not None and canceled <= as_of and not done_known
        if done_known and due is not None:
            labels.append(float(done > due))
        elif not done_known and not canceled_known and due is not None and due < as_of:
            labels.append(1.0)  # still open past its due date: breached whatever happens next
        else:
            labels.append(math.nan)
        risks.append(sla_risk)
        if done_known and done >= predicted:
            errors.append(abs(eta_minutes - (done - predicted).total_seconds() / 60))
    y, p = np.array(labels), np.array(risks)
    known = ~np.isnan(y)
    return {
        "auc": float(roc_auc_score(y[known], p[known])),
        "mae_minutes": float(np.mean(errors)),
        "coverage": float(known.sum() / len(rows)),
        "eta_outcomes": float(len(errors)),
    }


def _evaluate_live(pipe: Pipeline, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "osml"), "evaluate-live", *args],
        env={**pipe.env(), "MLFLOW_TRACKING_URI": pipe.facade.env["MLFLOW_TRACKING_URI"], **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _prometheus_samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(url, timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_live_auc_and_mae_equal_the_figures_of_the_same_orders_scored_independently(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline.start_worker()
    orders, bodies = _labelled_slice()
    pipeline.broker.publish(bodies)
    pipeline.wait_rows(SLICE_ORDERS)

    stored = {str(o): at for o, at in pipeline.query("SELECT order_id, predicted_at FROM orders_prediction")}
    outcomes = _outcomes_at_prediction_time(orders, stored)
    load_into_postgres(OrdersData(orders=outcomes, history=None, source="test"), pipeline.database_url)
    # two days after the last prediction: some orders are done by then, some overdue, some not due yet
    as_of = max(stored.values()) + timedelta(days=2)

    result = _evaluate_live(pipeline, "--as-of", as_of.isoformat(), "--json")
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    version = pipeline.facade.active_version()
    figures = {f["window"]: f for f in report["figures"]}
    assert set(figures) == {"7d", "30d"}  # every prediction is two days old: none in the last day
    live = figures["30d"]
    assert (live["modelVersion"], live["role"], live["predictions"]) == (version, "production", SLICE_ORDERS)

    expected = _independent_figures(pipeline, as_of)
    assert 0 < expected["coverage"] < 1 and expected["eta_outcomes"] > 50  # the slice has known and open orders
    assert live["auc"] == pytest.approx(expected["auc"], abs=1e-12)
    assert live["mae_minutes"] == pytest.approx(expected["mae_minutes"], rel=1e-12)
    assert live["coverage"] == pytest.approx(expected["coverage"], abs=1e-12)
    assert live["eta_outcomes"] == expected["eta_outcomes"]
    assert live["auc"] > 0.6  # the predictions carry signal about these outcomes: the join lines them up
    assert figures["7d"]["auc"] == live["auc"]

    # MLflow: one run per version per window in osml-live, linked to the training run and carrying its figures
    client = MlflowClient(pipeline.facade.env["MLFLOW_TRACKING_URI"])
    live_experiment = client.get_experiment_by_name(LIVE_EXPERIMENT_NAME)
    assert live_experiment is not None
    runs = client.search_runs([live_experiment.experiment_id], filter_string=f"tags.modelVersion = '{version}'")
    assert sorted(r.data.tags["liveWindow"] for r in runs) == ["30d", "7d"]
    run = next(r for r in runs if r.data.tags["liveWindow"] == "30d")
    assert run.data.metrics["auc"] == pytest.approx(expected["auc"], abs=1e-12)
    assert run.data.metrics["mae_minutes"] == pytest.approx(expected["mae_minutes"], rel=1e-12)
    assert run.data.tags["role"] == "production"
    training_experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    assert training_experiment is not None
    (training,) = client.search_runs(
        [training_experiment.experiment_id], filter_string=f"tags.modelVersion = '{version}'"
    )
    assert run.data.tags["trainingRunId"] == training.info.run_id
    assert run.data.metrics["offline_auc"] == training.data.metrics["auc"]
    assert training.info.run_id in run.data.tags["mlflow.note.content"]

    # a second evaluation adds a point to the same runs' history instead of new runs
    later = as_of + timedelta(hours=1)
    assert _evaluate_live(pipeline, "--as-of", later.isoformat()).returncode == 0
    assert len(client.search_runs([live_experiment.experiment_id])) == 2
    assert len(client.get_metric_history(run.info.run_id, "auc")) == 2

    # the scheduled job serves the figures to Prometheus
    port = free_port()
    env = {**pipeline.env(), "MLFLOW_TRACKING_URI": pipeline.facade.env["MLFLOW_TRACKING_URI"]}
    loop = start_process(
        [str(VENV_BIN / "osml"), "evaluate-live", "--loop"],
        log=tmp_path / "evaluate-live.log",
        env={**env, "OSML_LIVE_METRICS_PORT": str(port), "OSML_LIVE_INTERVAL_S": "3600"},
    )
    try:
        labels = frozenset({"model_version": version, "window": "30d", "role": "production"}.items())
        samples: dict[Any, float] = wait_until(
            lambda: (
                (s := _try_samples(f"http://127.0.0.1:{port}/metrics")) and ("osml_live_predictions", labels) in s and s
            ),
            timeout=120,
            what=f"evaluate-live --loop exporting (log: {tmp_path / 'evaluate-live.log'})",
        )
        assert samples["osml_live_predictions", labels] == SLICE_ORDERS
        assert samples["osml_live_last_evaluation_timestamp_seconds", frozenset()] > as_of.timestamp() - 3 * 86400
    finally:
        stop_process(loop)
    assert loop.returncode == 0


def _try_samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
    try:
        return _prometheus_samples(url)
    except httpx.HTTPError:
        return None


def test_a_missing_outcomes_table_is_reported_by_name(pipeline: Pipeline) -> None:
    pipeline.start_worker()  # migrates: orders_prediction exists, the backend's table does not
    result = _evaluate_live(pipeline, "--json", OSML_OUTCOMES_TABLE="closed_orders")
    assert result.returncode == 2
    assert "outcomes table 'closed_orders' does not exist" in result.stderr
    assert "Traceback" not in result.stderr
