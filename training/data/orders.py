"""Load the canonical orders export from a dataset reference (`datasetRef`).

A reference is one of:
- a path (or `file://` URL) to a CSV, a folder of CSVs or a .zip of them (`orders.csv` [+ `order_status_history.csv`]);
  the UCI incident event log (columns `number`, `incident_state`, `made_sla`) is recognised and adapted;
- `s3://bucket/key` (an object or a prefix; endpoint from `MLFLOW_S3_ENDPOINT_URL` / `AWS_ENDPOINT_URL`);
- `postgresql://...` (tables `orders` and, optionally, `order_status_history`).

Column rules, timestamp handling and error messages live in `training.data.canonical`.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from training.data.canonical import OrdersData, canonical_history, canonical_orders
from training.data.errors import DataError

__all__ = ["DataError", "OrdersData", "canonical_history", "canonical_orders", "load_orders", "validate_ref"]


def _scheme(ref: str) -> str:
    return ref.split("://", 1)[0].lower() if "://" in ref else ""


def local_path(ref: str) -> Path:
    if _scheme(ref) == "file":
        parsed = urlparse(ref)
        if parsed.netloc not in ("", "localhost"):
            raise DataError("file:// URLs must name a local path (file:///abs/path)", source=ref)
        return Path(unquote(parsed.path))
    return Path(ref).expanduser()


def validate_ref(ref: str) -> None:
    """Cheap check of a datasetRef at submission: syntax for remote sources, existence for local ones."""
    if not isinstance(ref, str) or not ref.strip():
        raise DataError("datasetRef is empty")
    ref = ref.strip()
    scheme = _scheme(ref)
    if scheme == "s3":
        from training.data.s3 import parse_s3_ref

        parse_s3_ref(ref)
    elif scheme.startswith("postgres"):
        from training.data.postgres import check_url

        check_url(ref)
    elif scheme in ("", "file"):
        from training.data.files import check_local

        check_local(local_path(ref))
    else:
        raise DataError(f"unsupported datasetRef scheme '{scheme}' (use a path, file://, s3:// or postgresql://)")


def load_orders(ref: str) -> OrdersData:
    """Read and validate the orders (and status history, when present) behind a datasetRef."""
    validate_ref(ref)
    ref = ref.strip()
    scheme = _scheme(ref)
    # Sources are imported on use: boto3 and psycopg are only paid for by those who need them.
    if scheme == "s3":
        from training.data.s3 import read_s3

        return read_s3(ref)
    if scheme.startswith("postgres"):
        from training.data.postgres import read_postgres

        return read_postgres(ref)
    from training.data.files import read_local

    return read_local(local_path(ref), ref=ref)
