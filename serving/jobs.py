"""Training jobs as the facade sees them: it records them and reads them; trainers (`osml trainer`) run them.

Blocking API (database), called from worker threads. Nothing here imports `training`: a request is checked
with `osml.train_requests` only, and the facade never trains.
"""

from __future__ import annotations

import logging
import threading

from osml.dataset_access import check_allowed
from osml.job_store import Job, JobStore
from osml.train_requests import check_candidates, check_dataset_ref
from serving.errors import InvalidRequest, UnknownJob
from serving.payloads import TrainConfig

log = logging.getLogger("osml.serving.jobs")


class TrainingJobs:
    def __init__(self, *, store: JobStore, stale_seconds: float) -> None:
        self.store = store
        self._stale_seconds = stale_seconds
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def start(self) -> None:
        """Create the job tables if they are not yet known to exist. Every job call goes through here, so a
        database that was down at boot serves jobs from its first request back, not from the next retry."""
        if self._schema_ready:
            return
        with self._schema_lock:  # two first requests must not both run CREATE TABLE
            if not self._schema_ready:
                self.store.create_schema()
                self._schema_ready = True

    def submit(self, dataset_ref: str, config: TrainConfig) -> Job:
        """Record a `queued` job after the checks the facade can make without the data (docs/serving.md)."""
        try:
            check_dataset_ref(dataset_ref)
            check_allowed(dataset_ref.strip())
        except ValueError as exc:  # DatasetRefused is one
            raise InvalidRequest(
                f"invalid datasetRef: {exc}", errors=[{"field": "datasetRef", "message": str(exc), "type": "dataset"}]
            ) from exc
        if config.candidates is not None:
            try:
                check_candidates(config.candidates)
            except ValueError as exc:
                raise InvalidRequest(
                    str(exc), errors=[{"field": "trainConfig.candidates", "message": str(exc), "type": "candidates"}]
                ) from exc
        self.start()
        # what the trainer reads back (trainer/job.py): the request's trainConfig, unset options left out
        job = self.store.create(dataset_ref=dataset_ref.strip(), train_config=config.model_dump(exclude_none=True))
        log.info("training job queued", extra={"jobId": job.id, "datasetRef": dataset_ref})
        return job

    def get(self, job_id: str) -> Job:
        self.start()
        job = self.store.get(job_id)
        if job is None:
            raise UnknownJob(f"no training job {job_id}")
        return job

    def sweep(self) -> None:
        """Fail the running jobs whose trainer died: the trainers do this too, but there may be none left."""
        failed = self.store.fail_stale(stale_seconds=self._stale_seconds)
        if failed:
            log.warning("training jobs cut off by a stopped trainer marked failed", extra={"count": failed})
