"""Job state transitions are guarded: a job is claimed once, and a job whose trainer stopped vouching for it reads
`failed`."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from osml.job_store import JobStore, make_engine
from tests.support import wait_until

pytestmark = pytest.mark.unit


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    s = JobStore(make_engine(f"sqlite:///{tmp_path / 'nested' / 'jobs.db'}"))
    s.create_schema()
    return s


def test_a_job_moves_queued_running_done(store: JobStore) -> None:
    job = store.create(dataset_ref="orders.csv", train_config={"testSize": 0.2, "randomState": 42})
    assert (job.status, job.progress, job.model_version) == ("queued", 0.0, None)
    assert not store.progress(job.id, 0.5, "not running yet")
    claimed = store.claim("trainer-a")
    assert claimed is not None and (claimed.id, claimed.status) == (job.id, "running")
    assert store.progress(job.id, 0.6, "training")
    assert store.done(job.id, model_version="2026-05-01_001", metrics={"auc": 0.8, "f1": 0.7, "maeMinutes": 50.0})
    done = store.get(job.id)
    assert done is not None
    assert (done.status, done.progress, done.model_version) == ("done", 1.0, "2026-05-01_001")
    assert done.metrics == {"auc": 0.8, "f1": 0.7, "maeMinutes": 50.0}
    assert done.created_at.tzinfo is not None


def test_jobs_are_claimed_oldest_first_and_only_once(store: JobStore) -> None:
    first = store.create(dataset_ref="a.csv", train_config={})
    second = store.create(dataset_ref="b.csv", train_config={})
    assert store.claim("a").id == first.id  # type: ignore[union-attr]
    assert store.claim("b").id == second.id  # type: ignore[union-attr]
    assert store.claim("c") is None


def test_trainers_claiming_at_once_take_each_job_exactly_once(store: JobStore) -> None:
    jobs = {store.create(dataset_ref=f"{n}.csv", train_config={}).id for n in range(20)}
    trainers = 4
    start = threading.Barrier(trainers)

    def drain(name: str) -> list[str]:
        start.wait(timeout=30)
        taken = []
        while (job := store.claim(name)) is not None:
            taken.append(job.id)
        return taken

    with ThreadPoolExecutor(trainers) as pool:
        taken = [job for batch in pool.map(drain, [f"trainer-{n}" for n in range(trainers)]) for job in batch]
    assert sorted(taken) == sorted(jobs)


def test_a_finished_job_cannot_be_revived(store: JobStore) -> None:
    job = store.create(dataset_ref="orders.csv", train_config={})
    store.claim("a")
    assert store.fail(job.id, "invalid dataset: no rows")
    assert not store.done(job.id, model_version="x", metrics={})
    assert not store.progress(job.id, 0.9, "late")
    failed = store.get(job.id)
    assert failed is not None and (failed.status, failed.reason) == ("failed", "invalid dataset: no rows")


def test_stale_running_jobs_fail_and_vouched_or_queued_ones_do_not(store: JobStore) -> None:
    dead = store.create(dataset_ref="a.csv", train_config={})
    store.claim("dead-trainer")
    alive = store.create(dataset_ref="b.csv", train_config={})
    store.claim("live-trainer")
    waiting = store.create(dataset_ref="c.csv", train_config={})

    def dead_job_failed() -> bool:
        store.heartbeat("live-trainer")
        store.fail_stale(stale_seconds=0.2)
        return store.get(dead.id).status == "failed"  # type: ignore[union-attr]

    wait_until(dead_job_failed, timeout=10, what="the orphaned job to be marked failed")
    job = store.get(dead.id)
    assert job is not None and job.reason is not None and "interrupted" in job.reason
    assert store.get(alive.id).status == "running"  # type: ignore[union-attr]
    assert store.get(waiting.id).status == "queued"  # type: ignore[union-attr]


def test_shutdown_fails_only_the_owners_jobs(store: JobStore) -> None:
    mine = store.create(dataset_ref="a.csv", train_config={})
    store.claim("me")
    other = store.create(dataset_ref="b.csv", train_config={})
    store.claim("someone")
    assert store.fail_owned("me", "interrupted: the trainer stopped") == 1
    assert store.get(mine.id).status == "failed"  # type: ignore[union-attr]
    assert store.get(other.id).status == "running"  # type: ignore[union-attr]
