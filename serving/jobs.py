"""Training jobs: accepted on the request path, run in a child process, state in the job table (blocking API)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from serving.errors import InvalidRequest, UnknownJob
from serving.job_store import Job, JobStore

log = logging.getLogger("osml.serving.jobs")

TRAIN_JOB_COMMAND = (sys.executable, "-m", "serving.train_job")


def validate_dataset_ref(ref: str) -> None:
    from training.data.orders import validate_ref

    validate_ref(ref)


def validate_candidates(names: Sequence[str]) -> None:
    from training.candidates import validate

    validate(names)


class TrainingJobs:
    """Queues jobs one at a time (training saturates the machine); the facade's heartbeat vouches for them."""

    def __init__(
        self,
        *,
        store: JobStore,
        child_env: dict[str, str],
        stale_seconds: float,
        validate_ref: Callable[[str], None] = validate_dataset_ref,
        command: Sequence[str] = TRAIN_JOB_COMMAND,
    ) -> None:
        self.store = store
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._child_env = child_env
        self._stale_seconds = stale_seconds
        self._validate_ref = validate_ref
        self._command = tuple(command)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="osml-train")
        self._children: set[subprocess.Popen[bytes]] = set()
        self._pending: set[str] = set()  # this instance's queued or running jobs
        self._lock = threading.Lock()

    def start(self) -> None:
        self.store.create_schema()
        failed = self.store.fail_stale(stale_seconds=self._stale_seconds)
        if failed:
            log.warning("jobs cut off by a previous process marked failed", extra={"count": failed})

    def submit(
        self,
        *,
        dataset_ref: str,
        test_size: float,
        random_state: int,
        candidates: Sequence[str] | None = None,
        tune_seconds: float | None = None,
    ) -> Job:
        try:
            self._validate_ref(dataset_ref)
        except ValueError as exc:  # training.data.errors.DataError is a ValueError
            raise InvalidRequest(
                f"invalid datasetRef: {exc}", errors=[{"field": "datasetRef", "message": str(exc), "type": "dataset"}]
            ) from exc
        config: dict[str, object] = {"testSize": test_size, "randomState": random_state}
        if candidates is not None:
            try:
                validate_candidates(candidates)
            except ValueError as exc:
                raise InvalidRequest(
                    str(exc), errors=[{"field": "trainConfig.candidates", "message": str(exc), "type": "candidates"}]
                ) from exc
            config["candidates"] = list(candidates)
        if tune_seconds is not None:
            config["tuneSeconds"] = tune_seconds
        job = self.store.create(dataset_ref=dataset_ref, train_config=config, owner=self.owner)
        with self._lock:
            self._pending.add(job.id)
        self._executor.submit(self._run, job.id)
        log.info("training job queued", extra={"jobId": job.id, "datasetRef": dataset_ref})
        return job

    def get(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None:
            raise UnknownJob(f"no training job {job_id}")
        return job

    def maintain(self) -> None:
        """Vouch for this instance's jobs and fail the ones whose owner died (any replica's)."""
        with self._lock:
            vouch = bool(self._pending)
        if vouch:
            self.store.heartbeat(self.owner)
        self.store.fail_stale(stale_seconds=self._stale_seconds)

    def _run(self, job_id: str) -> None:
        try:
            self._run_child(job_id)
        finally:
            with self._lock:
                self._pending.discard(job_id)

    def _run_child(self, job_id: str) -> None:
        env = {**os.environ, **self._child_env}
        try:
            child = subprocess.Popen([*self._command, job_id], env=env)
        except OSError as exc:
            self.store.fail(job_id, f"could not start the training process: {exc}")
            return
        with self._lock:
            self._children.add(child)
        try:
            code = child.wait()
        finally:
            with self._lock:
                self._children.discard(child)
        if code != 0 and self.store.fail(job_id, f"training process exited with code {code}"):
            log.error("training process died", extra={"jobId": job_id, "exitCode": code})

    def shutdown(self) -> None:
        """Stop queued and running jobs; they read `failed` rather than `running` forever."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            children = list(self._children)
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        self.store.fail_owned(self.owner, "interrupted: the facade stopped before the job finished")
