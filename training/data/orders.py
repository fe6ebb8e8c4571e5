"""Load the canonical orders export from a dataset reference (`datasetRef`).

A reference is one of:
- a path (or `file://` URL) to a CSV, a folder of CSVs or a .zip of them (`orders.csv` [+ `order_status_history.csv`]);
  the UCI incident event log (columns `number`, `incident_state`, `made_sla`) is recognised and adapted;
- `s3://bucket/key` (an object or a prefix; endpoint from `MLFLOW_S3_ENDPOINT_URL` / `AWS_ENDPOINT_URL`);
- `postgresql://...` (tables `orders` and, optionally, `order_status_history`).

Column rules, timestamp handling and error messages live in `training.data.canonical`. Which references may
be read at all (dataset roots, hosts, buckets) is `osml.dataset_access`, checked here at submission and on read.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from osml.dataset_access import DatasetRefused, check_allowed, without_masked_password
from osml.train_requests import check_dataset_ref, scheme
from training.data.canonical import OrdersData, canonical_history, canonical_orders
from training.data.errors import DataError

__all__ = ["DataError", "OrdersData", "canonical_history", "canonical_orders", "load_orders", "validate_ref"]


def local_path(ref: str) -> Path:
    """The path of a local reference (`check_dataset_ref` has refused file:// URLs naming another host)."""
    if scheme(ref) == "file":
        return Path(unquote(urlparse(ref).path))
    return Path(ref).expanduser()


def validate_ref(ref: str) -> Path | None:
    """Cheap check of a datasetRef: its syntax (as the facade checks it at submission), the allow-lists for remote
    sources, the dataset roots and existence for local ones. Returns the real (resolved) path of a local reference."""
    try:
        check_dataset_ref(ref)
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    ref = ref.strip()
    try:
        real = check_allowed(ref)
    except DatasetRefused as exc:
        raise DataError(str(exc)) from exc
    if real is not None:
        from training.data.files import check_local

        check_local(real)
    return real


def load_orders(ref: str) -> OrdersData:
    """Read and validate the orders (and status history, when present) behind a datasetRef."""
    real = validate_ref(ref)
    ref = ref.strip()
    kind = scheme(ref)
    # Sources are imported on use: boto3 and psycopg are only paid for by those who need them.
    if kind == "s3":
        from training.data.s3 import read_s3

        return read_s3(ref)
    if kind.startswith("postgres"):
        from training.data.postgres import read_postgres

        return read_postgres(without_masked_password(ref))
    from training.data.files import read_local

    assert real is not None
    # the resolved path is what was checked: a link swapped after the check is not followed
    return read_local(real, ref=ref, label=str(local_path(ref)))
