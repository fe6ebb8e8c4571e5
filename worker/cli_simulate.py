"""`osml simulate`: backend simulator - publish REQUESTED events, report READY count and latency."""

from __future__ import annotations

import argparse

from osml.logs import configure_logging
from worker.runner import run as run_async
from worker.settings import WorkerSettings
from worker.simulator import generate_orders, insert_orders, simulate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--orders", type=int, default=1000, help="how many orders (default 1000)")
    parser.add_argument("--rate", type=float, default=500, help="REQUESTED events per second, 0 = flat out")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for READY after publishing")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--orders-database-url",
        help="also insert the orders into this database's `orders` table (backend-like; created if missing)",
    )


def run(args: argparse.Namespace) -> int:
    settings = WorkerSettings()
    configure_logging(settings.log_level)
    orders = generate_orders(args.orders, seed=args.seed)
    if args.orders_database_url:
        run_async(insert_orders(args.orders_database_url, orders))
    report = run_async(simulate(broker_url=settings.broker_url, orders=orders, rate=args.rate, timeout_s=args.timeout))
    print(report.summary())
    return 0 if report.received == report.published else 1
