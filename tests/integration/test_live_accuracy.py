"""Live accuracy end to end on the real services: a labelled slice of orders is predicted through the worker (real
facade, RabbitMQ, PostgreSQL), its outcomes land in the backend's `orders` table, and `osml evaluate-live` reports
the AUC and MAE that the same orders give when scored here independently (sklearn on the joined rows).
"""

from __future__ import annotations

import asyncio
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
import psycopg
import pytest
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import roc_auc_score

from osml import registry
from osml.conventions import (
    CHALLENGER_ALIAS,
    ETA_MODEL_NAME,
    EXPERIMENT_NAME,
    LIVE_EXPERIMENT_NAME,
    SLA_MODEL_NAME,
)
from serving.app import create_app
from serving.settings import ServingSettings
from tests.conftest_training import TrainPair
from tests.conftest_worker import Pipeline
from tests.services import fresh_database
from tests.support import VENV_BIN, free_port, start_process, stop_process, wait_until
from training.data.canonical import OrdersData
from training.data.postgres import load_into_postgres
from training.data.synthetic import generate
from training.features import build_features
from worker.events import PredictionRequested
from worker.migrate import upgrade

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


def _independent_figures(rows: list[tuple[Any, ...]], as_of: datetime) -> dict[str, float]:
    """AUC and MAE from the joined rows (sla_risk, eta_minutes, predicted_at, due_at, done_at, canceled_at), with the
    rules written out here rather than taken from the code."""
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

    expected = _independent_figures(
        pipeline.query(
            "SELECT p.sla_risk::float8, p.eta_minutes, p.predicted_at, o.due_at, o.done_at, o.canceled_at"
            " FROM orders_prediction p JOIN orders o ON o.id = p.order_id::text"
        ),
        as_of,
    )
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


async def _facade_with_a_challenger(
    settings: ServingSettings, items: list[dict[str, Any]]
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """The batch answered by an in-process facade, and its /models; its lifespan's end stores the queued shadow rows."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://f") as facade:
        return await facade.post("/predict/batch", json={"items": items}), (await facade.get("/models")).json()


def test_evaluate_live_compares_the_challenger_with_production_on_the_orders_both_scored(
    sqlite_tracking_uri: str, trained_pair: TrainPair, tmp_path: Path
) -> None:
    """A facade with a challenger loaded stores both answers per order; evaluate-live scores each on those rows."""
    production = trained_pair(sqlite_tracking_uri, activate=True).model_version
    challenger = trained_pair(sqlite_tracking_uri, activate=False, random_state=7).model_version
    client = MlflowClient(tracking_uri=sqlite_tracking_uri, registry_uri=sqlite_tracking_uri)
    pair = registry.find_pair(client, challenger)
    client.set_registered_model_alias(SLA_MODEL_NAME, CHALLENGER_ALIAS, pair.sla.version)
    client.set_registered_model_alias(ETA_MODEL_NAME, CHALLENGER_ALIAS, pair.eta.version)
    orders, bodies = _labelled_slice()
    items = [{"requestId": f"r{i}", **orjson.loads(b)} for i, b in enumerate(bodies)]
    items = [{"requestId": i["requestId"], "orderId": i["orderId"], "features": i["data"]["features"]} for i in items]

    with fresh_database("osml_live_shadow") as database_url:
        upgrade(database_url)
        settings = ServingSettings(
            auth_disabled=True, database_url=database_url, tracking_uri=sqlite_tracking_uri, model_poll_seconds=60
        )
        answered, listed = asyncio.run(_facade_with_a_challenger(settings, items))
        assert answered.status_code == 200 and {a["modelVersion"] for a in answered.json()["items"]} == {production}
        assert {m["modelVersion"]: (m["active"], m["challenger"]) for m in listed} == {
            production: (True, False),
            challenger: (False, True),
        }
        with psycopg.connect(database_url) as conn:
            stored = conn.execute("SELECT order_id, predicted_at FROM orders_prediction_shadow").fetchall()
            assert len(stored) == SLICE_ORDERS
            outcomes = _outcomes_at_prediction_time(orders, {order: at for order, at in stored})
            load_into_postgres(OrdersData(orders=outcomes, history=None, source="test"), database_url)
            as_of = max(at for _, at in stored) + timedelta(days=2)
            expected = {
                role: _independent_figures(
                    conn.execute(
                        f"SELECT s.{role}_sla_risk::float8, s.{role}_eta_minutes, s.predicted_at, o.due_at, o.done_at,"
                        " o.canceled_at FROM orders_prediction_shadow s JOIN orders o ON o.id = s.order_id"
                    ).fetchall(),
                    as_of,
                )
                for role in ("challenger", "production")
            }
        result = subprocess.run(
            [str(VENV_BIN / "osml"), "evaluate-live", "--as-of", as_of.isoformat(), "--json"],
            env={"PATH": str(VENV_BIN), "OSML_DATABASE_URL": database_url, "MLFLOW_TRACKING_URI": sqlite_tracking_uri},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    assert report["figures"] == []  # nothing went through the worker: no served predictions stored
    shadow = {(f["window"], f["role"]): f for f in report["shadow"] if f["window"] == "30d"}
    assert {role: f["modelVersion"] for (_, role), f in shadow.items()} == {
        "challenger": challenger,
        "production": production,
    }
    assert shadow["30d", "challenger"]["comparedWith"] == production
    for role in ("challenger", "production"):
        figure = shadow["30d", role]
        assert figure["predictions"] == SLICE_ORDERS
        assert figure["auc"] == pytest.approx(expected[role]["auc"], abs=1e-12)
        assert figure["mae_minutes"] == pytest.approx(expected[role]["mae_minutes"], rel=1e-12)
        assert figure["coverage"] == pytest.approx(expected[role]["coverage"], abs=1e-12)
    assert shadow["30d", "challenger"]["auc"] != shadow["30d", "production"]["auc"]  # two models, same orders

    live = client.get_experiment_by_name(LIVE_EXPERIMENT_NAME)
    assert live is not None
    runs = client.search_runs(
        [live.experiment_id], filter_string="tags.liveRows = 'shadow' and tags.liveWindow = '30d'"
    )
    assert {(r.data.tags["modelVersion"], r.data.tags["role"]) for r in runs} == {
        (challenger, "challenger"),
        (production, "production"),
    }
    for run in runs:
        assert run.data.tags["shadowChallengerVersion"] == challenger
        assert run.data.tags["shadowProductionVersion"] == production
        assert run.data.metrics["auc"] == pytest.approx(expected[run.data.tags["role"]]["auc"], abs=1e-12)
