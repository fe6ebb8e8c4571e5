"""One training job in its own process: `python -m serving.train_job JOB_ID`.

Training is CPU-heavy and long; in a child process it neither blocks the facade's event loop nor competes
for its GIL. The child writes its own progress and outcome to the job table (OSML_DATABASE_URL) and trains
against MLFLOW_TRACKING_URI with the same entry point as `osml train`. It exits when its parent (the facade)
dies, so a job is never left running unowned: the facade's heartbeat stops and the job reads `failed`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from osml.logs import configure_logging
from serving.job_store import JobStore, make_engine

log = logging.getLogger("osml.serving.jobs")


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)  # a watchdog's cadence, not synchronisation
    log.error("facade process gone; abandoning the training job")
    os._exit(3)


def run_job(job_id: str, *, store: JobStore, tracking_uri: str) -> int:
    from training.data.errors import DataError
    from training.pipeline import train
    from training.tune import DEFAULT_TUNE_SECONDS

    job = store.get(job_id)
    if job is None or not store.start(job_id):
        log.error("job is not queued", extra={"jobId": job_id})
        return 2
    config = job.train_config

    def progress(fraction: float, message: str) -> None:
        store.progress(job_id, fraction, message)

    try:
        result = train(
            dataset_ref=job.dataset_ref,
            test_size=float(config.get("testSize", 0.2)),
            random_state=int(config.get("randomState", 42)),
            tracking_uri=tracking_uri,
            progress=progress,
            candidates=config.get("candidates"),
            tune_seconds=float(config.get("tuneSeconds", DEFAULT_TUNE_SECONDS)),
        )
    except DataError as exc:
        store.fail(job_id, f"invalid dataset: {exc}")
        log.warning("training job rejected its data", extra={"jobId": job_id, "error": str(exc)})
        return 1
    except Exception as exc:
        store.fail(job_id, f"training failed: {type(exc).__name__}: {exc}")
        log.exception("training job failed", extra={"jobId": job_id})
        return 1
    metrics = {
        "auc": float(result.metrics["auc"]),
        "f1": float(result.metrics["f1"]),
        "maeMinutes": float(result.metrics["maeMinutes"]),
    }
    store.done(job_id, model_version=result.model_version, metrics=metrics)
    log.info("training job done", extra={"jobId": job_id, "modelVersion": result.model_version, **metrics})
    return 0


def main(argv: list[str]) -> int:
    configure_logging(os.environ.get("OSML_LOG_LEVEL", "INFO"))
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    (job_id,) = argv
    store = JobStore(make_engine(os.environ["OSML_DATABASE_URL"]))
    return run_job(job_id, store=store, tracking_uri=os.environ["MLFLOW_TRACKING_URI"])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
