"""The trainer tier with real processes: `osml serve` records jobs and `osml trainer` replicas run them, on a
PostgreSQL job table and a real `mlflow server`.

- Two trainers and three POST /train calls: each job runs exactly once, and the three pairs never share a
  modelVersion (the two trainers finish close together).
- Claims on PostgreSQL (`FOR UPDATE SKIP LOCKED`) from many threads at once take each job once.
- A trainer killed mid-job takes its training process with it, and the job reads `failed`.
- A trainer set to the Dask engine (OSML_TRAIN_ENGINE=dask, no scheduler: a LocalCluster per job) runs a job on
  it, and the facade serves the pair that job registered.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient

from osml import registry
from osml.job_store import JobStore, make_engine
from osml.schema import SEED_EXAMPLE_FEATURES
from tests.conftest_training import FAST_CANDIDATES
from tests.contract.facade import FacadeProcess, facade_process, trainer_process
from tests.services import MlflowServer
from tests.support import wait_until

pytestmark = pytest.mark.integration


def submit(facade: FacadeProcess, dataset: Path, **config: Any) -> str:
    body = {"datasetRef": str(dataset), "trainConfig": {"candidates": list(FAST_CANDIDATES), **config}}
    response = httpx.post(f"{facade.url}/train", json=body, headers=facade.admin_headers, timeout=30)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    return str(response.json()["jobId"])


def job(facade: FacadeProcess, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{facade.url}/train/jobs/{job_id}", headers=facade.admin_headers, timeout=30)
    assert response.status_code == 200
    view: dict[str, Any] = response.json()
    return view


def claims(*logs: Path) -> collections.Counter[str]:
    """jobId -> how many times a trainer claimed it, from the trainers' JSON logs."""
    counted: collections.Counter[str] = collections.Counter()
    for log in logs:
        for line in log.read_text().splitlines():
            if line.startswith("{") and "training job claimed" in line:
                counted[json.loads(line)["jobId"]] += 1
    return counted


def test_two_trainers_run_three_jobs_exactly_once(
    tmp_path: Path, pg_database: str, mlflow_tracking_server: MlflowServer, synthetic_csv: Path
) -> None:
    uri = mlflow_tracking_server.url
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    before = {p.model_version for p in registry.list_pairs(client)}
    stores = {"tracking_uri": uri, "database_url": pg_database}
    with (
        facade_process(tmp_path, **stores, ready=False) as facade,
        trainer_process(tmp_path, **stores, name="trainer-a"),
        trainer_process(tmp_path, **stores, name="trainer-b"),
    ):
        job_ids = [submit(facade, synthetic_csv) for _ in range(3)]

        def finished() -> list[dict[str, Any]] | None:
            views = [job(facade, job_id) for job_id in job_ids]
            return views if all(v["status"] in {"done", "failed"} for v in views) else None

        views = wait_until(finished, timeout=900, interval=1, what="three training jobs")
    assert [v["status"] for v in views] == ["done"] * 3, views
    versions = {v["modelVersion"] for v in views}
    assert len(versions) == 3, f"two jobs share a modelVersion: {views}"
    # a job run twice would have registered a fourth pair
    assert {p.model_version for p in registry.list_pairs(client)} - before == versions
    counted = claims(tmp_path / "trainer-a.log", tmp_path / "trainer-b.log")
    assert counted == dict.fromkeys(job_ids, 1)


def test_postgres_claims_from_many_trainers_take_each_job_once(pg_database: str) -> None:
    engine = make_engine(pg_database)
    store = JobStore(engine)
    store.create_schema()
    jobs = {store.create(dataset_ref=f"{n}.csv", train_config={}).id for n in range(40)}
    trainers = 6
    start = threading.Barrier(trainers)

    def drain(name: str) -> list[str]:
        start.wait(timeout=30)
        taken = []
        while (claimed := store.claim(name)) is not None:
            taken.append(claimed.id)
        return taken

    try:
        with ThreadPoolExecutor(trainers) as pool:
            taken = [j for batch in pool.map(drain, [f"trainer-{n}" for n in range(trainers)]) for j in batch]
    finally:
        engine.dispose()
    assert sorted(taken) == sorted(jobs)


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_job_cut_off_by_a_killed_trainer_reads_failed(
    tmp_path: Path, pg_database: str, mlflow_tracking_server: MlflowServer, synthetic_csv: Path
) -> None:
    stores = {"tracking_uri": mlflow_tracking_server.url, "database_url": pg_database}
    timing = {"OSML_JOB_HEARTBEAT_SECONDS": "0.5", "OSML_JOB_STALE_SECONDS": "3"}
    with facade_process(tmp_path, **stores, env=timing, ready=False) as facade:
        with trainer_process(tmp_path, **stores, env=timing) as trainer:
            job_id = submit(facade, synthetic_csv)
            wait_until(lambda: job(facade, job_id)["status"] == "running", timeout=120, what="the job to run")
            (training,) = wait_until(lambda: children_of(trainer.pid), timeout=30, what="the training process")
            os.kill(trainer.pid, signal.SIGKILL)
            trainer.wait(timeout=30)
            wait_until(lambda: not alive(training), timeout=30, what="the training process to die with its trainer")
        view = wait_until(
            lambda: (v := job(facade, job_id))["status"] != "running" and v, timeout=60, what="the job to fail"
        )
    assert view["status"] == "failed"
    assert "interrupted" in str(view["reason"])


def test_a_trainer_on_the_dask_engine_registers_a_pair_the_facade_serves(
    tmp_path: Path, pg_database: str, mlflow_tracking_server: MlflowServer, synthetic_csv: Path
) -> None:
    uri = mlflow_tracking_server.url
    stores = {"tracking_uri": uri, "database_url": pg_database}
    dask = {"OSML_TRAIN_ENGINE": "dask", "OSML_DASK_WORKERS": "2"}
    with (
        facade_process(tmp_path, **stores, ready=False) as facade,
        trainer_process(tmp_path, **stores, env=dask),
    ):
        job_id = submit(facade, synthetic_csv, tuneSeconds=0)  # the job names no engine: the trainer's setting
        view = wait_until(
            lambda: (v := job(facade, job_id))["status"] in {"done", "failed"} and v, timeout=600, what="the dask job"
        )
        assert view["status"] == "done", view
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        pair = registry.find_pair(client, view["modelVersion"])
        assert pair.sla.run_id is not None
        parent = client.get_run(client.get_run(pair.sla.run_id).data.tags["mlflow.parentRunId"])
        assert parent.data.tags["osml.engine"] == "dask"
        activated = httpx.post(  # forced: other tests' pairs on this tracking server may hold `production`
            f"{facade.url}/models/activate",
            json={"modelVersion": view["modelVersion"], "force": True},
            headers=facade.admin_headers,
            timeout=60,
        )
        assert activated.status_code == 200, activated.text
        body = {"requestId": "dask-job", "orderId": "o-1", "features": SEED_EXAMPLE_FEATURES}
        served = httpx.post(f"{facade.url}/predict", json=body, headers=facade.predict_headers, timeout=30)
    assert served.status_code == 200, served.text
    assert served.json()["modelVersion"] == view["modelVersion"]
