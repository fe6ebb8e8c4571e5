"""`osml generate`: write synthetic orders as CSV files and/or into PostgreSQL tables."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

import psycopg

from training.data.errors import DataError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--orders", type=int, required=True, help="number of orders to generate")
    parser.add_argument("--seed", type=int, default=42, help="random seed (same seed, same data)")
    parser.add_argument("--out", type=Path, help="folder for orders.csv and order_status_history.csv")
    parser.add_argument("--postgres", metavar="URL", help="also (re)create tables orders/order_status_history here")
    parser.add_argument("--start", type=datetime.fromisoformat, help="first day, ISO-8601 (default 2025-01-06)")


def run(args: argparse.Namespace) -> int:
    from osml.dataset_access import mask_secrets
    from training.data.synthetic import generate, load_into_postgres, write_csv

    if args.out is None and args.postgres is None:
        raise SystemExit("osml generate: give --out DIR and/or --postgres URL")
    if args.orders < 1:
        raise SystemExit("osml generate: --orders must be at least 1")
    data = generate(orders=args.orders, seed=args.seed, start=args.start)
    summary: dict[str, object] = {"orders": len(data.orders), "seed": args.seed}
    if args.out is not None:
        summary["files"] = [str(p) for p in write_csv(data, args.out)]
    if args.postgres is not None:
        try:
            load_into_postgres(data, args.postgres)
        except (DataError, psycopg.Error) as exc:
            raise SystemExit(f"osml generate: cannot load into {mask_secrets(args.postgres)}: {exc}") from exc
        summary["postgres"] = mask_secrets(args.postgres)
    print(json.dumps(summary))
    return 0
