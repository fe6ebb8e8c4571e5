"""Where a scoring run's rows go: a Parquet folder, one CSV file, or PostgreSQL's `orders_prediction`.

Every partition is written by the worker that scored it, in one pass, and reports how many rows it added:
- `PATH.parquet`: a folder of `part.N.parquet` (earlier parts removed first, so a re-run replaces the output);
- `PATH.csv`: one file with a header (parts written beside it, then joined in order);
- `postgresql://...`: rows inserted into `orders_prediction` (migrations applied first). A row's `event_id` is
  uuid5(run id, order id), the run's request for that order: a re-run with the same run id conflicts on it and
  inserts nothing new. Order ids must be UUIDs there, as the backend's are.
Files are written on the workers' filesystem: with a remote scheduler, a folder all workers share.
"""

from __future__ import annotations

import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import dask.dataframe as dd
import numpy as np
import pandas as pd
import psycopg

from osml.dataset_access import mask_secrets
from scoring.predict import PREDICTION_COLUMNS
from training.data.errors import DataError
from worker.migrate import psycopg_url, upgrade

# the namespace of batch rows' event ids: uuid5(this, "<run id>/<order id>")
SCORE_EVENT_NAMESPACE: Final = uuid.UUID("1f6f3c1e-2b0a-5d7e-9c4b-5f0a5b7c0d14")
_UUID: Final = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
_INSERT: Final = """
INSERT INTO orders_prediction
    (id, event_id, order_id, model_version, sla_risk, eta_minutes, predicted_at, features_snapshot, score_run_id)
SELECT id, event_id, order_id, model_version, sla_risk, eta_minutes, predicted_at, features_snapshot, score_run_id
FROM score_rows
ON CONFLICT (event_id) DO NOTHING
"""
_STAGE: Final = """
CREATE TEMP TABLE score_rows (
    id uuid, event_id uuid, order_id uuid, model_version text, sla_risk numeric(5, 4), eta_minutes integer,
    predicted_at timestamptz, features_snapshot jsonb, score_run_id text
) ON COMMIT DROP
"""


class Sink(Protocol):
    def prepare(self) -> None:
        """Blocking set-up in the client before any partition is written."""

    def write(self, rows: dd.DataFrame) -> int:
        """Write every partition; the number of rows added."""


def score_event_id(run_id: str, order_id: str) -> str:
    return str(uuid.uuid5(SCORE_EVENT_NAMESPACE, f"{run_id}/{order_id}"))


def _written(counts: dd.Series) -> int:
    return int(np.sum(counts.compute()))


def _counted(n: int) -> pd.Series:
    """A partition writer's answer: one number (a Series, so the answers form a Dask Series)."""
    return pd.Series([n], dtype="int64")


def _file_part(rows: pd.DataFrame, folder: str, kind: str, partition_info: dict[str, int] | None = None) -> pd.Series:
    index = partition_info["number"] if partition_info else 0
    path = Path(folder) / f"part.{index}.{kind}"
    if kind == "parquet":
        rows.to_parquet(path, index=False)
    else:
        rows.to_csv(path, index=False, header=index == 0)
    return _counted(len(rows))


@dataclass(frozen=True)
class ParquetSink:
    path: Path

    def prepare(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        for old in self.path.glob("part.*.parquet"):
            old.unlink()

    def write(self, rows: dd.DataFrame) -> int:
        return _written(rows.map_partitions(_file_part, str(self.path), "parquet", meta=_counted(0)))


@dataclass(frozen=True)
class CsvSink:
    path: Path

    @property
    def parts(self) -> Path:
        return self.path.with_name(f".{self.path.name}.parts")

    def prepare(self) -> None:
        shutil.rmtree(self.parts, ignore_errors=True)
        self.parts.mkdir(parents=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, rows: dd.DataFrame) -> int:
        written = _written(rows.map_partitions(_file_part, str(self.parts), "csv", meta=_counted(0)))
        files = sorted(self.parts.glob("part.*.csv"), key=lambda p: int(p.name.split(".")[1]))
        with self.path.open("wb") as out:
            for part in files:
                with part.open("rb") as handle:
                    shutil.copyfileobj(handle, out)
        shutil.rmtree(self.parts)
        return written


def _insert_part(rows: pd.DataFrame, url: str, shown: str) -> pd.Series:
    if rows.empty:
        return _counted(0)
    ids = rows["order_id"].astype("str")
    bad = ~ids.str.fullmatch(_UUID)
    if bad.any():
        raise DataError(
            f"order id '{ids[bad].iloc[0]}' is not a UUID (orders_prediction.order_id holds the backend's UUIDs)",
            source=shown,
            column="order_id",
        )
    run_ids = rows["score_run_id"].astype("str")
    staged = rows.assign(
        id=[str(uuid.uuid4()) for _ in range(len(rows))],
        event_id=[score_event_id(r, o) for r, o in zip(run_ids, ids, strict=True)],
        predicted_at=rows["predicted_at"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f%z"),
    )[["id", "event_id", *PREDICTION_COLUMNS[:-1], "score_run_id"]]
    payload = staged.to_csv(index=False, header=False).encode()
    try:
        with psycopg.connect(url, connect_timeout=10) as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(_STAGE)
            with cur.copy(
                "COPY score_rows (id, event_id, order_id, model_version, sla_risk, eta_minutes, predicted_at,"
                " features_snapshot, score_run_id) FROM STDIN WITH (FORMAT csv)"
            ) as copy:
                copy.write(payload)
            cur.execute(_INSERT)
            return _counted(max(cur.rowcount, 0))
    except psycopg.Error as exc:
        raise DataError(f"cannot write predictions: {exc}".strip(), source=shown) from exc


@dataclass(frozen=True)
class PostgresSink:
    url: str

    def prepare(self) -> None:
        upgrade(self.url)

    def write(self, rows: dd.DataFrame) -> int:
        counts = rows.map_partitions(_insert_part, psycopg_url(self.url), mask_secrets(self.url), meta=_counted(0))
        return _written(counts)


def sink_for(out: str) -> Sink:
    """The sink an `--out` reference names (checked before any work starts)."""
    text = out.strip()
    if re.match(r"^postgres(?:ql)?(?:\+\w+)?://", text):
        return PostgresSink(text)
    if "://" in text and not text.startswith("file://"):
        raise DataError("write to a local .parquet folder, a .csv file or a postgresql:// database", source=text)
    path = Path(text.removeprefix("file://")).expanduser()
    if path.suffix.lower() == ".parquet":
        return ParquetSink(path)
    if path.suffix.lower() == ".csv":
        return CsvSink(path)
    raise DataError("the output must end in .parquet (a folder of parts) or .csv (one file)", source=text)
