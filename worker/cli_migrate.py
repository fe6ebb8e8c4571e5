"""`osml migrate`: apply the worker's database migrations (orders_prediction, outbox)."""

from __future__ import annotations

import argparse

from osml.logs import configure_logging
from worker.migrate import upgrade
from worker.settings import WorkerSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", help="PostgreSQL URL (default: OSML_DATABASE_URL)")
    parser.add_argument("--revision", default="head", help="target revision (default: head)")


def run(args: argparse.Namespace) -> int:
    settings = WorkerSettings()
    configure_logging(settings.log_level)
    upgrade(args.database_url or settings.database_url, args.revision)
    return 0
