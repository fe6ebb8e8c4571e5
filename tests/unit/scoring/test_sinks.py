"""File sinks and `--out` parsing: one pass over the partitions, counts of rows written, re-runs that replace."""

from __future__ import annotations

from pathlib import Path

import dask
import pandas as pd
import pytest

from scoring.predict import PREDICTION_COLUMNS
from scoring.sinks import CsvSink, ParquetSink, PostgresSink, score_event_id, sink_for
from training.data.errors import DataError
from training.data.partitioned import split

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def in_process() -> object:
    with dask.config.set(scheduler="synchronous"):
        yield


def rows(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": pd.Series([f"order-{i}" for i in range(n)], dtype="str"),
            "model_version": pd.Series(["2026-12-01_001"] * n, dtype="str"),
            "sla_risk": [round(i / n, 4) for i in range(n)],
            "eta_minutes": list(range(n)),
            "predicted_at": pd.Series([pd.Timestamp("2026-12-01T10:00:00Z")] * n, dtype="datetime64[ns, UTC]"),
            "features_snapshot": pd.Series(['{"priority":"HIGH","category":"TI"}'] * n, dtype="str"),
            "score_run_id": pd.Series(["run-1"] * n, dtype="str"),
        }
    )


def test_out_references_name_their_sink() -> None:
    assert sink_for("/data/scores.parquet") == ParquetSink(Path("/data/scores.parquet"))
    assert sink_for("file:///data/scores.csv") == CsvSink(Path("/data/scores.csv"))
    assert isinstance(sink_for("postgresql://u@db:5432/osml"), PostgresSink)
    for bad in ("/data/scores.json", "s3://bucket/scores.parquet"):
        with pytest.raises(DataError):
            sink_for(bad)


def test_parquet_parts_hold_every_row_and_a_smaller_rerun_leaves_no_stale_part(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "scores.parquet")
    sink.prepare()
    assert sink.write(split(rows(1000), rows_per_partition=200)) == 1000
    assert len(list(sink.path.glob("part.*.parquet"))) == 5
    sink.prepare()
    assert sink.write(split(rows(300), rows_per_partition=200)) == 300
    back = pd.read_parquet(sink.path)
    assert list(back.columns) == list(PREDICTION_COLUMNS) and len(back) == 300


def test_csv_is_one_file_with_one_header_and_the_rows_in_order(tmp_path: Path) -> None:
    sink = CsvSink(tmp_path / "out" / "scores.csv")
    sink.prepare()
    assert sink.write(split(rows(1000), rows_per_partition=150)) == 1000
    back = pd.read_csv(sink.path)
    assert list(back["order_id"]) == [f"order-{i}" for i in range(1000)]
    assert not sink.parts.exists()


def test_a_batch_rows_event_id_is_fixed_by_run_and_order() -> None:
    assert score_event_id("run-1", "a") == score_event_id("run-1", "a")
    assert len({score_event_id("run-1", "a"), score_event_id("run-2", "a"), score_event_id("run-1", "b")}) == 3
