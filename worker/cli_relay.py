"""`osml relay`: publish outbox rows as ML_PREDICTION_READY with publisher confirms."""

from __future__ import annotations

import argparse

from worker.relay import run_relay
from worker.runner import run_service
from worker.settings import WorkerSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Settings come from OSML_* environment variables (see docs/worker.md)."


def run(args: argparse.Namespace) -> int:
    return run_service(run_relay, WorkerSettings())
