"""`osml features --dataset REF --as-of creation|changes|ISO-TIME --out FILE.csv`: features as /predict takes them.

One row per (orderId, asOf): `creation` gives every order at its creation, `changes` every order at creation and
at each status change while open, an ISO-8601 instant every order open then. The columns after `orderId` and
`asOf` are exactly the camelCase fields of the schema (docs/features.md); an empty cell is an absent field.
The last stdout line is one JSON object: {"rows", "orders", "schema", "out"}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Final, get_args

import pandas as pd

from osml.schema import SCHEMAS, Features
from training.data.errors import DataError
from training.history import WAITING_MARKERS


def _whole_number(annotation: Any) -> bool:
    return annotation is int or any(_whole_number(arg) for arg in get_args(annotation))


# Count fields go out as whole numbers (pandas holds them as floats where some are missing).
_WHOLE_NUMBER_FIELDS: Final = frozenset(
    name for name, field in Features.model_fields.items() if _whole_number(field.annotation)
)
_LATEST_SCHEMA: Final = max(SCHEMAS, key=int)


def as_of_argument(value: str) -> str | pd.Timestamp:
    """`creation`, `changes` or an ISO-8601 instant (naive = UTC)."""
    if value in ("creation", "changes"):
        return value
    try:
        stamp = pd.Timestamp(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected creation, changes or an ISO-8601 instant, got {value!r}") from exc
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="datasetRef: path, file://, s3://bucket/key, postgresql://")
    parser.add_argument("--as-of", required=True, type=as_of_argument, help="creation | changes | ISO-8601 instant")
    parser.add_argument("--out", required=True, type=Path, help="CSV file to write")
    parser.add_argument("--schema", default=_LATEST_SCHEMA, choices=sorted(SCHEMAS), help="features schema version")
    parser.add_argument(
        "--waiting",
        default=",".join(WAITING_MARKERS),
        help="comma-separated markers of a waiting status (default: %(default)s)",
    )


def feature_rows(
    data_ref: str, as_of: str | pd.Timestamp, *, schema_version: str, waiting: tuple[str, ...]
) -> pd.DataFrame:
    """orderId, asOf and the schema's fields for the requested instants of the orders behind `data_ref`."""
    from training.data.orders import load_orders
    from training.features import features_as_of
    from training.snapshots import at_changes, at_creation, at_instant

    data = load_orders(data_ref)
    orders = data.orders
    if as_of == "creation":
        instants = at_creation(orders)
    elif as_of == "changes":
        instants = at_changes(orders, data.history)
    else:
        instants = at_instant(orders, pd.Timestamp(as_of))
    features = features_as_of(orders, data.history, instants, schema_version=schema_version, waiting=waiting)
    typed = {c: features[c].astype("Int64") for c in features.columns if c in _WHOLE_NUMBER_FIELDS}
    head = pd.DataFrame({"orderId": orders["id"].to_numpy()[instants.order], "asOf": instants.as_of()})
    return pd.concat([head, features.assign(**typed)], axis=1)


def run(args: argparse.Namespace) -> int:
    from training.data.canonical import csv_bytes
    from training.history import waiting_markers

    try:
        markers = waiting_markers(args.waiting.split(","))
        rows = feature_rows(args.dataset, args.as_of, schema_version=args.schema, waiting=markers)
    except (DataError, ValueError) as exc:
        print(f"osml features: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(csv_bytes(rows))
    summary = {"rows": len(rows), "orders": int(rows["orderId"].nunique()), "schema": args.schema}
    print(json.dumps(summary | {"out": str(args.out)}), flush=True)
    return 0
