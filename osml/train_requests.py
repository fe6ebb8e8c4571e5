"""What a training request may name, checked when the facade accepts it, without importing `training`.

The facade may run where the data is not (its own container): it checks only what a request says, the trainer
checks the data itself when it runs the job, and a job whose data turns out unusable reads `failed` with the
reason. `training.data.orders.validate_ref` starts from `check_dataset_ref`; `training.candidates` keeps the
families named here (tests/unit/osml/test_train_requests.py holds the two together).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final
from urllib.parse import urlparse

import psycopg

# model families per task, as `trainConfig.candidates` names them
CANDIDATES: Final[Mapping[str, tuple[str, ...]]] = {
    "sla": ("xgboost", "xgboost_tuned"),
    "eta": ("xgboost", "xgboost_tuned"),
}
# where training runs (`trainConfig.engine`, `osml train --engine`): one process, or Dask (training/distributed/)
ENGINES: Final = ("single", "dask")
POSTGRES_SCHEMES: Final = ("postgresql", "postgres", "postgresql+psycopg")


def scheme(ref: str) -> str:
    return ref.split("://", 1)[0].lower() if "://" in ref else ""


def check_dataset_ref(ref: str) -> None:
    """ValueError unless `ref` is a datasetRef the trainer can read: a path, file://, s3:// or postgresql://."""
    if not isinstance(ref, str) or not ref.strip():
        raise ValueError("datasetRef is empty")
    ref = ref.strip()
    kind = scheme(ref)
    if kind == "s3":
        if not urlparse(ref).netloc:
            raise ValueError(f"{ref}: expected s3://bucket/key")
    elif kind in POSTGRES_SCHEMES:
        try:
            psycopg.conninfo.conninfo_to_dict(f"postgresql://{ref.split('://', 1)[1]}")
        except psycopg.ProgrammingError as exc:  # its message quotes the option, never the password
            raise ValueError(f"invalid PostgreSQL URL: {exc}") from exc
    elif kind == "file":
        if urlparse(ref).netloc not in ("", "localhost"):
            raise ValueError(f"{ref}: file:// URLs must name a local path (file:///abs/path)")
    elif kind != "":
        raise ValueError(f"unsupported datasetRef scheme '{kind}' (use a path, file://, s3:// or postgresql://)")


def check_candidates(names: Sequence[str]) -> None:
    """ValueError unless every name is a known family and both tasks keep at least one."""
    known = sorted({name for families in CANDIDATES.values() for name in families})
    unknown = set(names) - set(known)
    if unknown:
        raise ValueError(f"unknown candidates {sorted(unknown)}; known: {known}")
    for task, families in CANDIDATES.items():
        if not set(names) & set(families):
            raise ValueError(f"none of {list(names)} is a {task} candidate; known: {sorted(families)}")
