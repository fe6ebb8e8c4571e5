"""End to end on the local stack (infra/stack.py, the launcher behind `make stack`): the MLflow tracking server on
a fresh PostgreSQL database with artifacts proxied to moto's S3 server, the facade, the worker and the relay on a
fresh RabbitMQ vhost. Train through POST /train from an s3:// dataset, activate, answer events, survive a restart
of the tracking server."""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from mlflow import MlflowClient

from infra import stack as launcher
from osml import registry
from osml.conventions import EXPERIMENT_NAME
from tests.support import REPO_ROOT, http_ok, wait_until
from worker.simulator import generate_orders, simulate

pytestmark = pytest.mark.integration

FEATURES = {"priority": "HIGH", "category": "TI", "createdHour": 14, "createdDayOfWeek": 2, "hasAssignee": 1}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[launcher.Stack]:
    running = launcher.new_stack(tmp_path_factory.mktemp("stack"))
    launcher.up(running, train=False, progress=lambda _message: None)
    try:
        yield running
    finally:
        groups = [process.pid for process in running.processes.values()]
        launcher.down(running)
    assert groups and not any(launcher.group_alive(pgid) for pgid in groups), "make stack-down left processes"


@pytest.fixture(scope="module", autouse=True)
def as_reader(stack: launcher.Stack) -> Iterator[None]:
    """This module's MLflow clients read the registry as the facade does."""
    with launcher.mlflow_identity(stack, "reader"):
        yield


def reader_auth(stack: launcher.Stack) -> tuple[str, str]:
    identity = stack.mlflow_identity("reader")
    return identity["MLFLOW_TRACKING_USERNAME"], identity["MLFLOW_TRACKING_PASSWORD"]


@dataclass(frozen=True)
class Trained:
    job: dict[str, Any]
    dataset_ref: str

    @property
    def model_version(self) -> str:
        return str(self.job["modelVersion"])


@pytest.fixture(scope="module")
def trained(stack: launcher.Stack) -> Trained:
    """A synthetic orders.csv put into the S3 server, trained through POST /train, activated as the writer."""
    ref = launcher.put_synthetic_dataset(stack, orders=800, seed=11)
    assert ref.startswith(f"s3://{stack.bucket}/")
    job = launcher.train_through_facade(stack, ref, candidates=launcher.FAST_CANDIDATES, timeout=300)
    launcher.activate(stack, str(job["modelVersion"]))
    return Trained(job=job, dataset_ref=ref)


def predict(stack: launcher.Stack) -> httpx.Response:
    body = {"requestId": str(uuid.uuid4()), "orderId": str(uuid.uuid4()), "features": FEATURES}
    return httpx.post(
        f"{stack.facade_url}/predict", json=body, headers={"X-API-Key": stack.predict_api_key}, timeout=10
    )


def test_training_job_reports_its_version_and_metrics(stack: launcher.Stack, trained: Trained) -> None:
    assert trained.job["status"] == "done" and trained.job["progress"] == 1
    assert set(trained.job["metrics"]) == {"auc", "f1", "maeMinutes"}
    assert 0.5 < trained.job["metrics"]["auc"] <= 1
    ready = httpx.get(f"{stack.facade_url}/health/ready", timeout=5).json()
    assert ready == {"status": "ready", "modelVersion": trained.model_version}
    pair = registry.production_pair(MlflowClient(stack.mlflow_url))
    assert pair is not None and pair.model_version == trained.model_version
    assert pair.dataset_ref == trained.dataset_ref


def test_requested_events_come_back_ready_and_are_stored(stack: launcher.Stack, trained: Trained) -> None:
    orders = generate_orders(25, seed=uuid.uuid4().int % 10_000)
    report = asyncio.run(simulate(broker_url=stack.broker_url("admin"), orders=orders, rate=0, timeout_s=60))
    assert (report.published, report.received) == (25, 25)
    assert report.model_versions == {trained.model_version: 25}
    with psycopg.connect(stack.database_url) as conn:
        rows = conn.execute(
            "SELECT order_id::text, model_version, sla_risk, eta_minutes FROM orders_prediction"
            " WHERE order_id = ANY(%s::uuid[])",
            ([o.id for o in orders],),
        ).fetchall()
    assert sorted(r[0] for r in rows) == sorted(o.id for o in orders)
    assert {r[1] for r in rows} == {trained.model_version}
    assert all(0 <= r[2] <= 1 and r[3] >= 0 for r in rows)


def test_model_artifacts_are_in_the_bucket_not_on_local_disk(stack: launcher.Stack, trained: Trained) -> None:
    client = MlflowClient(stack.mlflow_url)
    pair = registry.find_pair(client, trained.model_version)
    keys = [
        item["Key"]
        for page in stack.s3_client()
        .get_paginator("list_objects_v2")
        .paginate(Bucket=stack.bucket, Prefix="mlartifacts/")
        for item in page.get("Contents", [])
    ]
    local_roots = [REPO_ROOT / "mlartifacts", REPO_ROOT / "mlruns", REPO_ROOT / ".osml", Path(stack.dir)]
    for version in (pair.sla, pair.eta):
        # the REST API leaves ModelVersion.model_id empty; the source names the logged model
        source = str(version.source)
        model_id = re.search(r"\bm-[0-9a-f]{32}\b", source)
        assert model_id, source
        model = client.get_logged_model(model_id.group(0))
        # proxied: clients only ever see the tracking server's mlflow-artifacts: scheme
        assert model.artifact_location.startswith("mlflow-artifacts:/"), model.artifact_location
        assert any(f"/{model.model_id}/" in key and key.endswith("/MLmodel") for key in keys), model.model_id
        on_disk = [path for root in local_roots if root.exists() for path in root.glob(f"**/{model.model_id}")]
        assert on_disk == []


def test_tracking_server_lists_the_runs(stack: launcher.Stack, trained: Trained) -> None:
    login = httpx.get(f"{stack.mlflow_url}/", timeout=10)
    assert login.status_code == 401 and login.headers["WWW-Authenticate"].startswith("Basic")  # the UI asks
    ui = httpx.get(f"{stack.mlflow_url}/", auth=reader_auth(stack), timeout=10)
    assert ui.status_code == 200 and "<html" in ui.text.lower()
    experiment = httpx.get(
        f"{stack.mlflow_url}/ajax-api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": EXPERIMENT_NAME},
        auth=reader_auth(stack),
        timeout=10,
    ).json()["experiment"]
    # the call the UI's run table makes
    runs = httpx.post(
        f"{stack.mlflow_url}/ajax-api/2.0/mlflow/runs/search",
        json={"experiment_ids": [experiment["experiment_id"]], "max_results": 100},
        auth=reader_auth(stack),
        timeout=10,
    ).json()["runs"]
    pair = registry.find_pair(MlflowClient(stack.mlflow_url), trained.model_version)
    listed = {run["info"]["run_id"] for run in runs}
    assert {pair.sla.run_id, pair.eta.run_id} <= listed, f"the pair's runs are not in {EXPERIMENT_NAME}"


@dataclass
class Traffic:
    """/predict in a loop on a thread, recording every answer."""

    stack: launcher.Stack
    answers: list[tuple[int, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                response = predict(self.stack)
                version = response.json().get("modelVersion") if response.status_code == 200 else response.text
            except httpx.HTTPError as exc:
                self.answers.append((0, repr(exc)))
                continue
            self.answers.append((response.status_code, version))


def test_restarting_the_tracking_server_does_not_fail_predict(stack: launcher.Stack, trained: Trained) -> None:
    traffic = Traffic(stack)
    thread = threading.Thread(target=traffic.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(traffic.answers) >= 20, timeout=30, what="traffic before the restart")
        launcher.stop(stack, "mlflow")
        assert not http_ok(f"{stack.mlflow_url}/health")
        during = len(traffic.answers)
        wait_until(lambda: len(traffic.answers) >= during + 50, timeout=60, what="traffic while the server is down")
        launcher.start(stack, "mlflow")
        launcher.wait_ready(stack, "mlflow")
        after = len(traffic.answers)
        wait_until(lambda: len(traffic.answers) >= after + 20, timeout=30, what="traffic after the restart")
    finally:
        traffic.stop.set()
        thread.join(timeout=15)
    failures = [answer for answer in traffic.answers if answer != (200, trained.model_version)]
    assert failures == [], f"{len(failures)} of {len(traffic.answers)} /predict calls failed: {failures[:5]}"
    # the restarted server serves the same registry (PostgreSQL) and artifacts (S3)
    pair = registry.production_pair(MlflowClient(stack.mlflow_url))
    assert pair is not None and pair.model_version == trained.model_version
