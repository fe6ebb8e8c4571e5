"""A trainer claims queued jobs and runs each in a training process of its own, started with a minimal
environment; stopped mid-job, it stops the process and the job reads `failed`."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from osml.job_store import Job, JobStore, make_engine
from tests.support import wait_until
from trainer.service import Trainer, child_environment
from trainer.settings import TrainerSettings

pytestmark = pytest.mark.unit


@pytest.fixture
def settings(tmp_path: Path) -> TrainerSettings:
    return TrainerSettings(
        database_url=f"sqlite:///{tmp_path / 'jobs.db'}",
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        trainer_poll_seconds=0.1,
        job_heartbeat_seconds=0.5,
        job_stale_seconds=5,
    )


@pytest.fixture
def store(settings: TrainerSettings) -> JobStore:
    s = JobStore(make_engine(settings.database_url))
    s.create_schema()
    return s


@pytest.fixture
def running_trainer(settings: TrainerSettings, store: JobStore) -> Iterator[threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=Trainer(store=store, settings=settings).run, args=(stop,))
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=60)
        assert not thread.is_alive()


def status(store: JobStore, job: Job) -> Job:
    current = store.get(job.id)
    assert current is not None
    return current


def test_the_training_process_sees_what_training_reads_and_no_other_secret(settings: TrainerSettings) -> None:
    parent = {
        "PATH": "/usr/bin",
        "HOME": "/home/osml",
        "MLFLOW_TRACKING_PASSWORD": "writer-password",
        "AWS_ACCESS_KEY_ID": "datasets",
        "OSML_ADMIN_API_KEY": "admin-key",
        "OSML_PREDICT_API_KEY": "predict-key",
        "OSML_WEBHOOK_SECRET": "webhook-secret",
        "OSML_BROKER_URL": "amqp://osml:broker-password@rabbitmq/osml",
        "GITHUB_TOKEN": "token",
        "OSML_DASK_SCHEDULER": "tcp://dask-scheduler:8786",
    }
    env = child_environment(settings.model_copy(update={"trainer_threads": 3, "train_engine": "dask"}), parent)
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/osml",
        "MLFLOW_TRACKING_PASSWORD": "writer-password",
        "AWS_ACCESS_KEY_ID": "datasets",
        "OSML_DASK_SCHEDULER": "tcp://dask-scheduler:8786",  # where the trainer's Dask jobs run
        "OSML_DATABASE_URL": settings.database_url,
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "OSML_LOG_LEVEL": "INFO",
        "OSML_TRAIN_ENGINE": "dask",
        "OMP_NUM_THREADS": "3",
        "OPENBLAS_NUM_THREADS": "3",
        "MKL_NUM_THREADS": "3",
    }


def test_threads_default_to_the_cpus_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OSML_TRAINER_THREADS", raising=False)
    assert TrainerSettings().trainer_threads == len(os.sched_getaffinity(0))


def test_a_claimed_job_runs_in_its_own_process_and_reports_its_failure(
    store: JobStore, running_trainer: threading.Event, tmp_path: Path
) -> None:
    job = store.create(dataset_ref=str(tmp_path / "missing.csv"), train_config={"candidates": ["xgboost"]})
    failed = wait_until(
        lambda: (j := status(store, job)).status == "failed" and j, timeout=120, what="the job to run and fail"
    )
    assert failed.reason is not None and "no such file or folder" in failed.reason


def test_a_trainer_stopped_mid_job_stops_it_and_the_job_reads_failed(
    settings: TrainerSettings, store: JobStore, synthetic_csv: Path
) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=Trainer(store=store, settings=settings).run, args=(stop,))
    job = store.create(dataset_ref=str(synthetic_csv), train_config={"candidates": ["xgboost"]})
    thread.start()
    wait_until(lambda: status(store, job).status == "running", timeout=30, what="the job to be claimed")
    stop.set()
    thread.join(timeout=60)
    assert not thread.is_alive()
    stopped = status(store, job)
    assert stopped.status == "failed"
    assert stopped.reason is not None and "interrupted" in stopped.reason
