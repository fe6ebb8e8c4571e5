"""One training job in its own process: `python -m trainer.job JOB_ID`, started by a trainer.

Training is CPU-heavy and long; in a process of its own it can use every thread it is given and its memory is
returned when it ends. It writes its own progress and outcome to the job table (OSML_DATABASE_URL) and trains
against MLFLOW_TRACKING_URI with the same entry point as `osml train`.
"""

from __future__ import annotations

import logging
import os
import sys

from osml.job_store import JobStore, make_engine
from osml.logs import configure_logging
from trainer.settings import TrainerSettings

log = logging.getLogger("osml.trainer")


def run_job(job_id: str, *, store: JobStore, tracking_uri: str, engine: str = "single") -> int:
    """Run the job on its trainConfig's engine, else `engine` (the trainer's OSML_TRAIN_ENGINE)."""
    from training.cluster import DaskSettings
    from training.data.errors import DataError
    from training.engines import train_with
    from training.tune import DEFAULT_TUNE_SECONDS

    job = store.get(job_id)
    if job is None or job.status != "running":
        log.error("job is not running", extra={"jobId": job_id})
        return 2
    config = job.train_config

    def progress(fraction: float, message: str) -> None:
        store.progress(job_id, fraction, message)

    try:
        result = train_with(
            str(config.get("engine", engine)),
            DaskSettings(),
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
    (job_id,) = argv
    store = JobStore(make_engine(os.environ["OSML_DATABASE_URL"], application_name="osml-training-job"))
    engine = TrainerSettings().train_engine
    return run_job(job_id, store=store, tracking_uri=os.environ["MLFLOW_TRACKING_URI"], engine=engine)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
