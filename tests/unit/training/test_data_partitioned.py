"""The partitioned reader on local folders: one partition per file, the same canonical rows as the whole reader,
errors that name the file and row, and the whole reader for what is not a partitioned layout."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest

from training.data.canonical import OrdersData, csv_bytes
from training.data.errors import DataError
from training.data.orders import load_orders
from training.data.partitioned import layout, read_partitioned
from training.data.synthetic import generate, write_csv

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def data() -> OrdersData:
    return generate(orders=600, seed=11)


@pytest.fixture(autouse=True)
def in_process() -> object:
    with dask.config.set(scheduler="synchronous"):
        yield


def write_parts(data: OrdersData, root: Path, *, parquet: bool, parts: int = 3) -> None:
    (root / "orders").mkdir(parents=True)
    for i, rows in enumerate(np.array_split(np.arange(len(data.orders)), parts)):
        chunk = data.orders.iloc[rows]
        if parquet:
            chunk.to_parquet(root / "orders" / f"part.{i}.parquet", index=False)
        else:
            (root / "orders" / f"part-{i}.csv").write_bytes(csv_bytes(chunk))
    assert data.history is not None
    (root / "order_status_history.csv").write_bytes(csv_bytes(data.history))


def by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns[:1])).reset_index(drop=True)


@pytest.mark.parametrize("parquet", [False, True], ids=["csv-parts", "parquet-parts"])
def test_a_folder_of_parts_reads_as_one_partition_per_file_with_the_whole_readers_rows(
    data: OrdersData, tmp_path: Path, parquet: bool
) -> None:
    write_parts(data, tmp_path, parquet=parquet)
    read = read_partitioned(str(tmp_path))
    assert read.orders.npartitions == 3
    assert read.history is not None and read.history.npartitions == 1
    pd.testing.assert_frame_equal(by_id(read.orders.compute()), by_id(data.orders))
    pd.testing.assert_frame_equal(
        read.history.compute().reset_index(drop=True),
        data.history.reset_index(drop=True),  # type: ignore[union-attr]
    )


def test_the_plain_export_folder_is_a_partitioned_dataset_of_one_part(data: OrdersData, tmp_path: Path) -> None:
    write_csv(data, tmp_path)
    read = read_partitioned(str(tmp_path))
    assert read.orders.npartitions == 1
    pd.testing.assert_frame_equal(read.orders.compute().reset_index(drop=True), load_orders(str(tmp_path)).orders)


def test_a_single_file_is_read_whole_and_split_in_memory(data: OrdersData, tmp_path: Path) -> None:
    files = write_csv(data, tmp_path)
    read = read_partitioned(str(files[0]), rows_per_partition=250)
    assert read.orders.npartitions == 3
    pd.testing.assert_frame_equal(read.orders.compute().reset_index(drop=True), data.orders)


def test_a_bad_value_names_the_part_file_and_its_data_row(data: OrdersData, tmp_path: Path) -> None:
    write_parts(data, tmp_path, parquet=False)
    part = tmp_path / "orders" / "part-1.csv"
    frame = pd.read_csv(part, dtype=str)
    frame.loc[4, "priority"] = "SOON"
    frame.to_csv(part, index=False)
    with pytest.raises(DataError) as caught:
        read_partitioned(str(tmp_path)).orders.compute()
    assert caught.value.source == f"{tmp_path}/orders/part-1.csv"
    assert (caught.value.column, caught.value.row) == ("priority", 5)


def test_layout_finds_each_tables_parts_in_natural_order_and_skips_hidden_files() -> None:
    names = [
        "orders.parquet/part.10.parquet",
        "orders.parquet/part.2.parquet",
        "orders.parquet/_metadata",
        "orders.parquet/.part.2.parquet.crc",
        "order_status_history/a.csv",
        "notes.txt",
    ]
    assert layout(names, label="x") == {
        "orders": ["orders.parquet/part.2.parquet", "orders.parquet/part.10.parquet"],
        "history": ["order_status_history/a.csv"],
    }


def test_one_table_as_a_file_and_as_a_folder_is_refused() -> None:
    with pytest.raises(DataError, match="keep one"):
        layout(["orders.csv", "orders/part-0.csv"], label="x")
