"""`s3://bucket/key` sources: an object (CSV or zip) or a prefix holding the CSVs, fetched with boto3.

The endpoint comes from `MLFLOW_S3_ENDPOINT_URL` (as MLflow's artifact store uses), else `AWS_ENDPOINT_URL`,
else AWS itself; credentials come from the usual AWS environment/config chain.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from training.data.canonical import HISTORY_FILE, ORDERS_FILE, OrdersData
from training.data.errors import DataError
from training.data.files import read_local


def parse_s3_ref(ref: str) -> tuple[str, str]:
    """`s3://bucket/some/key` -> (`bucket`, `some/key`)."""
    parsed = urlparse(ref)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise DataError("expected s3://bucket/key", source=ref)
    return parsed.netloc, parsed.path.lstrip("/")


def s3_client() -> Any:
    """A boto3 S3 client for the configured endpoint (see the module docstring)."""
    endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or None
    return boto3.client("s3", endpoint_url=endpoint)


def _exists(client: Any, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise
    return True


def _download_prefix(client: Any, bucket: str, prefix: str, dest: Path, *, ref: str) -> Path:
    """Download the CSVs directly under `prefix` into `dest`; return `dest`."""
    prefix = f"{prefix.rstrip('/')}/" if prefix else ""
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    csvs = [k for k in keys if k.lower().endswith(".csv")]
    if not csvs:
        raise DataError(f"no such object, and no CSV files under the prefix (expected {ORDERS_FILE})", source=ref)
    wanted = {ORDERS_FILE, HISTORY_FILE}
    chosen = [k for k in csvs if PurePosixPath(k).name.lower() in wanted] or csvs
    for key in chosen:
        client.download_file(bucket, key, str(dest / PurePosixPath(key).name))
    return dest


def read_s3(ref: str) -> OrdersData:
    bucket, key = parse_s3_ref(ref)
    with tempfile.TemporaryDirectory(prefix="osml-s3-") as tmp:
        dest = Path(tmp)
        try:
            client = s3_client()
            if key and not key.endswith("/") and _exists(client, bucket, key):
                local = dest / PurePosixPath(key).name
                client.download_file(bucket, key, str(local))
            else:
                local = _download_prefix(client, bucket, key, dest, ref=ref)
        except (BotoCoreError, ClientError) as exc:
            raise DataError(f"cannot read from S3: {exc}", source=ref) from exc
        label = ref if local.is_file() else ref.rstrip("/")
        data = read_local(local, ref=ref, label=label)
    return replace(data, source=ref)
