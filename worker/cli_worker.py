"""`osml worker`: consume ML_PREDICTION_REQUESTED, predict through the facade, store prediction + outbox."""

from __future__ import annotations

import argparse

from worker.consumer import run_worker
from worker.runner import run_service
from worker.settings import WorkerSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Settings come from OSML_* environment variables (see docs/worker.md)."


def run(args: argparse.Namespace) -> int:
    return run_service(run_worker, WorkerSettings())
