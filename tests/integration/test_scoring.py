"""`osml score` against real services: the backend's tables in PostgreSQL read in ranges, scored on a 2-worker
LocalCluster into orders_prediction; an S3 prefix of Parquet parts into one CSV; the command line's answers.

The rows are checked against the registered pair predicting in this process on `build_features` of the same orders.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import boto3
import mlflow
import numpy as np
import orjson
import pandas as pd
import psycopg
import pytest

from osml.precision import published_eta_minutes, published_sla_risk
from scoring.batch import Scope, production_run, score
from scoring.predict import ScoringRun
from scoring.sinks import CsvSink, PostgresSink
from tests.conftest_training import train_fast_pair
from tests.services import S3Server, s3_server
from tests.support import VENV_BIN
from training.cluster import DaskSettings
from training.data.canonical import OrdersData
from training.data.synthetic import generate, load_into_postgres
from training.features import build_features

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory, synthetic_csv: Path) -> str:
    """An embedded tracking store with one pair in production."""
    workdir = tmp_path_factory.mktemp("scoring-mlflow")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    train_fast_pair(synthetic_csv, uri)
    return uri


@pytest.fixture(scope="module")
def backend_orders() -> OrdersData:
    """Synthetic orders with UUID ids, as the backend's are."""
    data = generate(orders=1600, seed=9)
    ids = {old: str(uuid.uuid5(uuid.NAMESPACE_URL, old)) for old in data.orders["id"]}
    assert data.history is not None
    return OrdersData(
        orders=data.orders.assign(id=data.orders["id"].map(ids).astype("str")),
        history=data.history.assign(order_id=data.history["order_id"].map(ids).astype("str")),
        source=data.source,
    )


def midpoint(data: OrdersData) -> datetime:
    return pd.Timestamp(data.orders["created_at"].median()).floor("s").to_pydatetime()


def expected(data: OrdersData, run: ScoringRun, *, scope: Scope) -> pd.DataFrame:
    """The rows a run must write, computed in this process: order_id -> sla_risk, eta_minutes, features."""
    orders = data.orders[data.orders["created_at"] <= run.predicted_at].reset_index(drop=True)
    features = build_features(orders, schema_version=run.schema_version)
    if scope == "open":
        keep = ~(orders["done_at"] <= run.predicted_at) & ~(orders["canceled_at"] <= run.predicted_at)
        orders, features = orders[keep.to_numpy()], features[keep.to_numpy()]
    mlflow.set_tracking_uri(run.tracking_uri)
    sla = mlflow.pyfunc.load_model(run.sla_uri).predict(features.reset_index(drop=True))
    eta = mlflow.pyfunc.load_model(run.eta_uri).predict(features.reset_index(drop=True))
    return pd.DataFrame(
        {"sla_risk": published_sla_risk(sla), "eta_minutes": published_eta_minutes(eta)},
        index=pd.Index(orders["id"].to_numpy(), name="order_id"),
    ).assign(features=[row.dropna().to_dict() for _, row in features.iterrows()])


def check_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    got = got.set_index("order_id").sort_index()
    want = want.sort_index()
    assert list(got.index) == list(want.index)
    np.testing.assert_array_equal(got["sla_risk"].astype(float).to_numpy(), want["sla_risk"].to_numpy())
    np.testing.assert_array_equal(got["eta_minutes"].astype(int).to_numpy(), want["eta_minutes"].to_numpy())
    first = want.index[0]
    snapshot = got.loc[first, "features_snapshot"]
    snapshot = orjson.loads(snapshot) if isinstance(snapshot, str) else snapshot
    assert snapshot == pytest.approx(want.loc[first, "features"])


def test_backend_tables_scored_on_a_local_cluster_into_orders_prediction_once_per_run(
    pg_database: str, tracking_uri: str, backend_orders: OrdersData
) -> None:
    load_into_postgres(backend_orders, pg_database)
    run = production_run(tracking_uri=tracking_uri, run_id="backfill-1", as_of=midpoint(backend_orders))
    sink = PostgresSink(pg_database)
    common = {"sink": sink, "run": run, "cluster": DaskSettings(workers=2), "rows_per_partition": 400}

    result = score(pg_database, **common)  # type: ignore[arg-type]

    want = expected(backend_orders, run, scope="open")
    assert 0 < result.written == len(want) < len(backend_orders.orders)
    with psycopg.connect(pg_database) as conn:
        got = pd.DataFrame(
            conn.execute(
                "SELECT order_id::text, sla_risk, eta_minutes, features_snapshot, model_version, predicted_at,"
                " score_run_id FROM orders_prediction"
            ).fetchall(),
            columns=[
                "order_id",
                "sla_risk",
                "eta_minutes",
                "features_snapshot",
                "model_version",
                "predicted_at",
                "score_run_id",
            ],
        )
    check_rows(got, want)
    assert set(got["model_version"]) == {run.model_version}
    assert set(got["predicted_at"]) == {run.predicted_at}
    assert set(got["score_run_id"]) == {"backfill-1"}

    # the same run again adds nothing, another run adds its own rows (in this process: the engine is not the point)
    here = {**common, "cluster": DaskSettings(workers=0)}
    assert score(pg_database, **here).written == 0  # type: ignore[arg-type]
    other = production_run(tracking_uri=tracking_uri, run_id="backfill-2", as_of=run.predicted_at)
    assert score(pg_database, **{**here, "run": other}).written == len(want)  # type: ignore[arg-type]
    with psycopg.connect(pg_database) as conn:
        counts = dict(conn.execute("SELECT score_run_id, count(*) FROM orders_prediction GROUP BY 1").fetchall())
    assert counts == {"backfill-1": len(want), "backfill-2": len(want)}


@pytest.fixture
def s3_parts(tmp_path: Path, backend_orders: OrdersData, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """The orders as three Parquet parts under s3://BUCKET/exports/orders/."""
    with s3_server(tmp_path) as server:
        for name, value in server.env.items():
            monkeypatch.setenv(name, value)
        client = boto3.client("s3", endpoint_url=server.endpoint_url)
        for i, rows in enumerate(np.array_split(np.arange(len(backend_orders.orders)), 3)):
            path = tmp_path / f"part.{i}.parquet"
            backend_orders.orders.iloc[rows].to_parquet(path, index=False)
            client.upload_file(str(path), server.bucket, f"exports/orders/part.{i}.parquet")
        yield server


def test_an_s3_prefix_of_parquet_parts_scored_in_process_into_one_csv(
    s3_parts: S3Server, tmp_path: Path, tracking_uri: str, backend_orders: OrdersData
) -> None:
    run = production_run(tracking_uri=tracking_uri, run_id="all-1", as_of=midpoint(backend_orders))
    out = tmp_path / "scores.csv"
    result = score(
        f"s3://{s3_parts.bucket}/exports",
        sink=CsvSink(out),
        run=run,
        scope="all",
        cluster=DaskSettings(workers=0),
    )
    want = expected(backend_orders, run, scope="all")
    assert result.written == len(want)
    check_rows(pd.read_csv(out, dtype={"order_id": str}), want)


def osml_score(*args: str, tracking_uri: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "osml"), "score", *args],
        capture_output=True,
        text=True,
        timeout=300,
        # the allow-lists the session sets (tests/conftest.py), as an operator sets them for the command
        env={
            "MLFLOW_TRACKING_URI": tracking_uri,
            "PATH": str(VENV_BIN),
            **{k: v for k, v in os.environ.items() if k.startswith("OSML_DATASET_")},
        },
        check=False,
    )


def test_the_command_prints_its_run_as_the_last_line(tmp_path: Path, tracking_uri: str, synthetic_csv: Path) -> None:
    out = tmp_path / "scores.parquet"
    ok = osml_score(
        "--dataset", str(synthetic_csv), "--as-of", "2030-01-01T00:00:00Z", "--out", str(out), "--workers", "0",
        "--run-id", "cli-1", tracking_uri=tracking_uri,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout.strip().splitlines()[-1])
    assert summary["runId"] == "cli-1" and summary["written"] == len(pd.read_parquet(out)) > 0
