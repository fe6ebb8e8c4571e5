"""The trainer loop: claim a queued job, run it in a child process, vouch for it until the child exits.

One job at a time per trainer (a training uses every thread it is given); run more trainers for more at once.
The child (`python -m trainer.job JOB_ID`) writes progress and the outcome itself. Killed with its trainer
(the kernel's parent-death signal, `osml.processes.die_with_parent`), a job's heartbeat stops and any trainer or
facade marks it `failed`. The child's environment is built from scratch: what training reads and nothing
else, so no facade key or other secret of the trainer's reaches code that reads user-named data.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Mapping, Sequence

from osml.job_store import JobStore
from osml.processes import start_process
from trainer.settings import TrainerSettings

log = logging.getLogger("osml.trainer")

JOB_COMMAND = (sys.executable, "-m", "trainer.job")
# what a training process reads from its environment: the process basics, then MLflow's and boto3's own
# variables (tracking server and its credentials, S3 datasets), the dataset allow-lists (osml/dataset_access.py),
# libpq's password file or password for postgresql:// datasets (docs/security.md), then the job database below
CHILD_ENV_NAMES = frozenset(
    {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV", "PGPASSFILE", "PGPASSWORD"}
)
# OSML_DASK_: where a Dask job's cluster is (training/cluster.py)
CHILD_ENV_PREFIXES = ("MLFLOW_", "AWS_", "OSML_DATASET_", "OSML_DASK_")


def child_environment(settings: TrainerSettings, environ: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in environ.items() if k in CHILD_ENV_NAMES or k.startswith(CHILD_ENV_PREFIXES)}
    threads = str(settings.trainer_threads)
    return env | {
        "OSML_DATABASE_URL": settings.database_url,
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "OSML_LOG_LEVEL": settings.log_level,
        "OSML_TRAIN_ENGINE": settings.train_engine,  # the engine of jobs whose trainConfig names none
        # OpenMP (XGBoost, scikit-learn) and BLAS size their pools from these at start-up
        "OMP_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
    }


class Trainer:
    def __init__(
        self,
        *,
        store: JobStore,
        settings: TrainerSettings,
        command: Sequence[str] = JOB_COMMAND,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.store = store
        self.settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._command = tuple(command)
        self._child_env = child_environment(settings, environ)

    def run(self, stop: threading.Event) -> None:
        """Claim and run jobs until `stop` is set; the job running then is stopped and reads `failed`."""
        self.store.create_schema()
        log.info("trainer ready", extra={"owner": self.owner, "threads": self.settings.trainer_threads})
        while not stop.is_set():
            try:
                self.store.fail_stale(stale_seconds=self.settings.job_stale_seconds)
                job = self.store.claim(self.owner)
            except Exception as exc:  # the job database may be briefly unreachable; keep trying
                log.warning("could not claim a job", extra={"error": str(exc)})
                job = None
            if job is None:
                stop.wait(self.settings.trainer_poll_seconds)
                continue
            log.info("training job claimed", extra={"jobId": job.id, "owner": self.owner})
            self._run_child(job.id, stop)

    def _run_child(self, job_id: str, stop: threading.Event) -> None:
        try:
            child = start_process(
                [*self._command, job_id], log=None, env=self._child_env, with_parent=True, inherit_env=False
            )
        except OSError as exc:
            self.store.fail(job_id, f"could not start the training process: {exc}")
            return
        while True:
            try:
                code = child.wait(timeout=self.settings.job_heartbeat_seconds)
                break
            except subprocess.TimeoutExpired:
                pass
            if stop.is_set():
                self._stop_child(child)
                self.store.fail_owned(self.owner, "interrupted: the trainer stopped before the job finished")
                log.warning("training job interrupted", extra={"jobId": job_id})
                return
            try:
                self.store.heartbeat(self.owner)
            except Exception as exc:  # a missed beat is tolerated up to job_stale_seconds
                log.warning("job heartbeat failed", extra={"jobId": job_id, "error": str(exc)})
        if code != 0 and self.store.fail(job_id, f"training process exited with code {code}"):
            log.error("training process died", extra={"jobId": job_id, "exitCode": code})

    @staticmethod
    def _stop_child(child: subprocess.Popen[bytes]) -> None:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
