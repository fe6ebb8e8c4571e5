"""`osml score --dataset REF --as-of now|ISO --out REF [--all] [--scheduler tcp://...] [--run-id ID]`.

Scores every order open at the as-of instant (every order created by then with --all) with the `production` pair
from the registry (MLFLOW_TRACKING_URI) on Dask: the scheduler given (or OSML_DASK_SCHEDULER), else a LocalCluster
of --workers processes. The LAST stdout line is one JSON object:
{"runId", "modelVersion", "asOf", "written", "seconds"}. Run it again with the same --run-id and a PostgreSQL
output gains nothing new.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import uuid
from datetime import UTC, datetime

import pandas as pd
from mlflow.exceptions import MlflowException
from pydantic import ValidationError

from osml.conventions import tracking_uri
from training.cluster import DaskSettings
from training.data.errors import DataError
from training.data.partitioned import ROWS_PER_PARTITION

_RUN_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def as_of_instant(value: str) -> datetime:
    """`now` or an ISO-8601 instant (naive = UTC)."""
    if value.strip().lower() == "now":
        return datetime.now(UTC)
    try:
        stamp = pd.Timestamp(value.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected 'now' or an ISO-8601 instant, got {value!r}") from exc
    if pd.isna(stamp):
        raise argparse.ArgumentTypeError(f"expected 'now' or an ISO-8601 instant, got {value!r}")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def run_id(value: str) -> str:
    if not _RUN_ID.fullmatch(value):
        raise argparse.ArgumentTypeError("1-64 characters of letters, digits and . _ : -")
    return value


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="datasetRef: folder or s3:// prefix of parts, postgresql://")
    parser.add_argument("--as-of", type=as_of_instant, default="now", help="'now' (default) or an ISO-8601 instant")
    parser.add_argument("--out", required=True, help="PATH.parquet (folder), PATH.csv or postgresql://...")
    parser.add_argument("--all", action="store_true", help="every order created by --as-of, not only open ones")
    parser.add_argument("--scheduler", help="a Dask scheduler (tcp://host:8786); default OSML_DASK_SCHEDULER")
    parser.add_argument("--workers", type=int, help="LocalCluster processes without a scheduler (0 = this process)")
    parser.add_argument("--run-id", type=run_id, help="names the run; the same id again adds no rows to PostgreSQL")
    parser.add_argument(
        "--rows-per-partition", type=positive, default=ROWS_PER_PARTITION, help="PostgreSQL ranges, single files"
    )


def run(args: argparse.Namespace) -> int:
    from scoring.batch import NoProductionPair, production_run, score
    from scoring.sinks import sink_for

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    overrides = {k: v for k, v in (("scheduler", args.scheduler), ("workers", args.workers)) if v is not None}
    try:
        cluster = DaskSettings(**overrides)
        sink = sink_for(args.out)
        run = production_run(tracking_uri=tracking_uri(), run_id=args.run_id or uuid.uuid4().hex, as_of=args.as_of)
        print(f"osml score: run {run.run_id}, pair {run.model_version}, as of {run.predicted_at}", file=sys.stderr)
        result = score(
            args.dataset,
            sink=sink,
            run=run,
            scope="all" if args.all else "open",
            cluster=cluster,
            rows_per_partition=args.rows_per_partition,
        )
    except (DataError, NoProductionPair, MlflowException, ValidationError) as exc:
        print(f"osml score: {exc}", file=sys.stderr)
        return 2
    summary = {
        "runId": result.run_id,
        "modelVersion": result.model_version,
        "asOf": result.as_of.isoformat(),
        "written": result.written,
        "seconds": round(result.seconds, 3),
    }
    print(json.dumps(summary), flush=True)
    return 0
