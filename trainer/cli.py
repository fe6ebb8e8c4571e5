"""`osml trainer`: claim queued training jobs (from POST /train) and run them, one at a time, until stopped.

Run as many as the machine (or cluster) has room for; they share the job table and never run a job twice.
SIGTERM or Ctrl-C stops the job running and marks it `failed` before exiting.
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from osml.job_store import JobStore, make_engine
from osml.logs import configure_logging
from trainer.service import Trainer
from trainer.settings import TrainerSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", type=int, help="threads per training job (default OSML_TRAINER_THREADS or all CPUs)"
    )


def run(args: argparse.Namespace) -> int:
    settings = TrainerSettings()
    if args.threads is not None:
        settings = settings.model_copy(update={"trainer_threads": max(1, args.threads)})
    configure_logging(settings.log_level)
    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    engine = make_engine(settings.database_url, application_name="osml-trainer")
    try:
        Trainer(store=JobStore(engine), settings=settings).run(stop)
    finally:
        engine.dispose()
    return 0
