"""`osml train --dataset REF [--test-size 0.2] [--random-state 42] [--tune-seconds 60] [--activate]
[--engine single|dask [--scheduler tcp://host:8786] [--workers N]]`.

Progress goes to stderr; the LAST stdout line is one JSON object: {"modelVersion": ..., "metrics": {...}}.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from training.data.errors import DataError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def flag(value: str) -> bool:
    """`--activate` also takes a value, so the MLproject can pass its typed parameter through."""
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


def whole_number(value: str) -> int:
    """An integer, also written as a float (MLproject parameters have no integer type: `42.0`)."""
    number = float(value)
    if not number.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}")
    return int(number)


def seconds(value: str) -> float:
    number = float(value)
    if not number >= 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {value!r}")
    return number


def add_tune_seconds(parser: argparse.ArgumentParser) -> None:
    from training.tune import DEFAULT_TUNE_SECONDS

    parser.add_argument(
        "--tune-seconds",
        type=seconds,
        default=DEFAULT_TUNE_SECONDS,
        help=f"time budget of the configuration search, both tasks together (default {DEFAULT_TUNE_SECONDS:.0f})",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="datasetRef: path, file://, s3://bucket/key, postgresql://")
    parser.add_argument("--test-size", type=float, default=0.2, help="newest share of orders held out (default 0.2)")
    parser.add_argument("--random-state", type=whole_number, default=42)
    parser.add_argument(
        "--activate",
        nargs="?",
        const=True,
        default=False,
        type=flag,
        help="point the alias `production` at the new pair (optionally --activate=true/false)",
    )
    parser.add_argument(
        "--candidates", default="all", help="comma-separated candidates to try: xgboost, xgboost_tuned (default: all)"
    )
    add_tune_seconds(parser)
    from training.features import FITTED_LATER_SNAPSHOTS, SNAPSHOTS_PER_ORDER

    parser.add_argument(
        "--snapshots-per-order",
        type=whole_number,
        default=SNAPSHOTS_PER_ORDER,
        help="cap on each order's snapshots (schema 4; default %(default)s), all of them scored",
    )
    parser.add_argument(
        "--fitted-later-snapshots",
        type=whole_number,
        default=FITTED_LATER_SNAPSHOTS,
        help="of which the models fit on each order's creation and this many others, drawn at random (default"
        " %(default)s): the knob of training time",
    )
    add_engine(parser)


def add_engine(parser: argparse.ArgumentParser) -> None:
    from training.engines import ENGINES

    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="single",
        help="single: one process, the data in memory; dask: partitioned on Dask, boosters by xgboost.dask",
    )
    parser.add_argument(
        "--scheduler", help="--engine dask: a Dask scheduler (tcp://host:8786); default OSML_DASK_SCHEDULER"
    )
    parser.add_argument("--workers", type=int, help="--engine dask without a scheduler: LocalCluster processes")


def _progress(fraction: float, message: str) -> None:
    print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from training.cluster import DaskSettings
    from training.engines import train_with

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    names = [c.strip() for c in args.candidates.split(",") if c.strip()]
    candidates = None if names in ([], ["all"]) else names
    overrides = {k: v for k, v in (("scheduler", args.scheduler), ("workers", args.workers)) if v is not None}
    try:
        result = train_with(
            args.engine,
            DaskSettings(**overrides),
            dataset_ref=args.dataset,
            test_size=args.test_size,
            random_state=args.random_state,
            activate=args.activate,
            progress=_progress,
            candidates=candidates,
            tune_seconds=args.tune_seconds,
            snapshots_per_order=args.snapshots_per_order,
            fitted_later_snapshots=args.fitted_later_snapshots,
        )
    except (DataError, ValueError) as exc:  # a bad OSML_DASK_* setting is a pydantic ValueError too
        print(f"osml train: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        # numpy refuses an allocation larger than the machine can give: the export outgrew one process
        hint = " train on partitions with --engine dask (docs/scale.md)" if args.engine == "single" else ""
        print(f"osml train: out of memory on {args.engine!r};{hint or ' add Dask workers or memory'}", file=sys.stderr)
        return 3
    print(json.dumps({"modelVersion": result.model_version, "metrics": result.metrics}), flush=True)
    return 0
