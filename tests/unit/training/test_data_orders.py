"""The canonical orders reader: CSV, folder, zip, file://, UCI routing, normalisation and validation errors."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data.errors import DataError
from training.data.orders import load_orders, validate_ref

pytestmark = pytest.mark.unit

HEADER = "id,category,priority,created_at,due_at,done_at,canceled_at,assignee_id"
GOOD_ROWS = [
    "OS-1,hvac,HIGH,2026-03-02T09:00:00Z,2026-03-02T17:00:00Z,2026-03-02T12:00:00Z,,tech-1",
    "OS-2,plumbing,low,2026-03-02T10:00:00,,,2026-03-02T11:00:00,",
]
HISTORY = "order_id,status,changed_at\nOS-1,open,2026-03-02T09:00:00Z\nOS-1,DONE,2026-03-02T12:00:00Z\n"


def write(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def orders_csv(tmp_path: Path) -> Path:
    return write(tmp_path / "export" / "orders.csv", HEADER, *GOOD_ROWS)


def test_single_csv_is_normalised(orders_csv: Path) -> None:
    data = load_orders(str(orders_csv))
    orders = data.orders.set_index("id")

    assert data.source == str(orders_csv)
    assert data.history is None
    assert orders["priority"].tolist() == ["HIGH", "LOW"]
    assert orders["created_at"].dtype == "datetime64[ns, UTC]"
    # naive timestamps are UTC
    assert orders.loc["OS-2", "created_at"] == pd.Timestamp("2026-03-02T10:00:00Z")
    assert orders.loc["OS-2", "canceled_at"] == pd.Timestamp("2026-03-02T11:00:00Z")
    assert pd.isna(orders.loc["OS-2", "due_at"]) and pd.isna(orders.loc["OS-2", "assignee_id"])
    assert orders["sla_breached"].isna().all()  # the column is optional


def test_camel_case_offsets_extra_and_context_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path / "backend.csv",
        "Id,Category,Priority,createdAt,dueAt,doneAt,assigneeId,slaBreached,Location,assignmentGroup,internal_note",
        "7,  network ,Critical,2026-03-02T09:00:00+02:00,2026-03-02T11:00:00+02:00,,u1,TRUE,HQ,infra,secret",
        "8,access,medium,2026-03-02 10:15:30.5,,,,0,,,",
    )
    orders = load_orders(str(path)).orders

    assert orders["id"].tolist() == ["7", "8"]
    assert orders["category"].tolist() == ["network", "access"]  # trimmed
    assert orders["priority"].tolist() == ["CRITICAL", "MEDIUM"]
    assert orders["created_at"].tolist() == [
        pd.Timestamp("2026-03-02T07:00:00Z"),
        pd.Timestamp("2026-03-02T10:15:30.5Z"),
    ]
    assert orders["sla_breached"].tolist() == pytest.approx([1.0, 0.0])
    assert orders["location"].tolist()[0] == "HQ" and pd.isna(orders["location"].iloc[1])
    assert orders["assignment_group"].iloc[0] == "infra"
    assert orders["channel"].isna().all() and orders["subcategory"].isna().all()
    assert "internal_note" not in orders.columns


def test_orders_csv_picks_up_its_history(orders_csv: Path) -> None:
    write(orders_csv.with_name("order_status_history.csv"), HISTORY)
    history = load_orders(str(orders_csv)).history
    assert history is not None
    assert history["status"].tolist() == ["OPEN", "DONE"]
    assert history["changed_at"].iloc[1] == pd.Timestamp("2026-03-02T12:00:00Z")


def test_folder_and_file_url(orders_csv: Path) -> None:
    write(orders_csv.with_name("order_status_history.csv"), HISTORY)
    for ref in (str(orders_csv.parent), orders_csv.parent.as_uri()):
        data = load_orders(ref)
        assert data.source == ref
        assert data.orders["id"].tolist() == ["OS-1", "OS-2"]
        assert data.history is not None and len(data.history) == 2


def test_zip_with_nested_members(tmp_path: Path, orders_csv: Path) -> None:
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(orders_csv, "dump/2026-03/orders.csv")
        zf.writestr("dump/2026-03/order_status_history.csv", HISTORY)
        zf.writestr("dump/README.txt", "not data")
    data = load_orders(str(archive))
    assert data.orders["id"].tolist() == ["OS-1", "OS-2"]
    assert data.history is not None and data.history["order_id"].tolist() == ["OS-1", "OS-1"]


def test_a_folder_with_one_csv_of_another_name(tmp_path: Path) -> None:
    write(tmp_path / "dump" / "export-2026.csv", HEADER, *GOOD_ROWS)
    assert len(load_orders(str(tmp_path / "dump")).orders) == 2


def test_uci_event_log_is_handed_to_the_uci_adapter(tmp_path: Path) -> None:
    header = (
        "number,incident_state,active,sys_mod_count,made_sla,opened_at,sys_updated_at,contact_type,location,"
        "category,subcategory,priority,assignment_group,assigned_to,resolved_at"
    )
    path = write(
        tmp_path / "incident_event_log.csv",
        header,
        "INC1,New,true,0,true,29/2/2016 01:16,29/2/2016 01:23,Phone,Location 1,Category 5,Sub 7,3 - Moderate,"
        "Group 5,?,29/2/2016 11:29",
        "INC1,Resolved,true,2,false,29/2/2016 01:16,29/2/2016 11:29,Phone,Location 1,Category 5,Sub 7,3 - Moderate,"
        "Group 5,Resolver 3,29/2/2016 11:29",
    )
    archive = tmp_path / "uci.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(path, "incident_event_log.csv")
    for ref in (str(path), str(archive)):
        data = load_orders(ref)
        assert data.source == ref
        assert data.orders["id"].tolist() == ["INC1"]
        assert data.orders["sla_breached"].tolist() == [1.0]  # made_sla false at the last event


# --- validation errors: file, column and row named -------------------------------------------------------------


def error_of(ref: str) -> DataError:
    with pytest.raises(DataError) as caught:
        load_orders(ref)
    return caught.value


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "orders.csv", "id,category,created_at", "1,a,2026-03-02T09:00:00Z")
    error = error_of(str(path))
    assert (error.source, error.column, error.row) == (str(path), "priority", None)
    assert str(error) == (
        f"{path}, column 'priority': missing required column(s) priority (found: id, category, created_at)"
    )


def test_unparsable_timestamp_names_file_column_and_row(tmp_path: Path) -> None:
    path = write(tmp_path / "orders.csv", HEADER, *GOOD_ROWS, "OS-3,hvac,LOW,2026-03-02T09:00:00Z,,03/02/2026 10h,,")
    error = error_of(str(path))
    assert (error.column, error.row) == ("done_at", 3)
    assert str(error) == (
        f"{path}, column 'done_at', row 3: unparsable timestamp '03/02/2026 10h'"
        " (expected ISO-8601, e.g. 2026-05-01T10:00:00Z) (id OS-3)"
    )


def test_unknown_priority_names_the_row(tmp_path: Path) -> None:
    path = write(tmp_path / "orders.csv", HEADER, "OS-9,hvac,URGENTE,2026-03-02T09:00:00Z,,,,", *GOOD_ROWS)
    error = error_of(str(path))
    assert (error.column, error.row) == ("priority", 1)
    assert "unknown priority 'URGENTE' (expected one of LOW, MEDIUM, HIGH, CRITICAL) (id OS-9)" in str(error)


def test_error_inside_a_zip_names_the_member(tmp_path: Path) -> None:
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("dump/orders.csv", "\n".join([HEADER, *GOOD_ROWS, "OS-3,hvac,,2026-03-02T09:00:00Z,,,,"]))
    error = error_of(str(archive))
    assert error.source == f"{archive}/dump/orders.csv"
    assert (error.column, error.row) == ("priority", 3)
    assert "unknown priority empty" in str(error)


@pytest.mark.parametrize(
    ("row", "column", "message"),
    [
        (",hvac,LOW,2026-03-02T09:00:00Z,,,,", "id", "missing value"),
        ("OS-1,hvac,LOW,2026-03-02T09:00:00Z,,,,", "id", "duplicate order id (id OS-1)"),
        ("OS-3,,LOW,2026-03-02T09:00:00Z,,,,", "category", "missing value (id OS-3)"),
        ("OS-3,hvac,LOW,,,,,", "created_at", "missing value (id OS-3)"),
        ("OS-3,hvac,LOW,2426-03-02T09:00:00Z,,,,", "created_at", "out of range"),
    ],
)
def test_bad_rows(tmp_path: Path, row: str, column: str, message: str) -> None:
    path = write(tmp_path / "orders.csv", HEADER, *GOOD_ROWS, row)
    error = error_of(str(path))
    assert (error.source, error.column, error.row) == (str(path), column, 3)
    assert message in str(error)


def test_bad_sla_flag(tmp_path: Path) -> None:
    path = write(tmp_path / "orders.csv", "id,category,priority,created_at,sla_breached", "1,a,LOW,2026-03-02,maybe")
    error = error_of(str(path))
    assert (error.column, error.row) == ("sla_breached", 1)
    assert "got 'maybe'" in str(error)


def test_bad_history_names_the_history_file(orders_csv: Path) -> None:
    history = write(orders_csv.with_name("order_status_history.csv"), "order_id,status,changed_at", "OS-1,OPEN,soon")
    error = error_of(str(orders_csv))
    assert (error.source, error.column, error.row) == (str(history), "changed_at", 1)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the file is empty"),
        ('id,category\n"unterminated,a\n', "not a readable CSV file"),
    ],
)
def test_unreadable_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(content)
    assert message in str(error_of(str(path)))


def test_zip_without_orders(tmp_path: Path) -> None:
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.csv", HEADER)
        zf.writestr("b.csv", HEADER)
    assert "expected orders.csv (or exactly one CSV file), found: a.csv, b.csv" in str(error_of(str(archive)))


def test_validate_ref_accepts_good_references(orders_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSML_DATASET_HOSTS", "127.0.0.1,db")
    for ref in (
        str(orders_csv),
        str(orders_csv.parent),
        orders_csv.as_uri(),
        "s3://bucket/exports/orders.csv",
        "s3://bucket",
        "postgresql://postgres@127.0.0.1:5432/backend",
        "postgresql+psycopg://u:p@db/backend",
    ):
        validate_ref(ref)


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("", "datasetRef is empty"),
        ("/no/such/export.csv", "/no/such/export.csv is outside the allowed dataset roots"),
        ("file://otherhost/data.csv", "file:// URLs must name a local path"),
        ("https://example.invalid/orders.csv", "unsupported datasetRef scheme 'https'"),
        ("s3:///key-without-bucket", "expected s3://bucket/key"),
        ("postgresql://u:secret@h/db?connect_timeout=x y", "invalid PostgreSQL URL"),
    ],
)
def test_validate_ref_refuses_bad_references(ref: str, message: str) -> None:
    with pytest.raises(DataError) as caught:
        validate_ref(ref)
    assert message in str(caught.value)
    assert "secret" not in str(caught.value)


def test_a_missing_file_inside_the_roots_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.csv: no such file or folder"):
        validate_ref(str(tmp_path / "missing.csv"))


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="found: no CSV files"):
        validate_ref(str(tmp_path))


def test_canonical_frame_types(orders_csv: Path) -> None:
    orders = load_orders(str(orders_csv)).orders
    assert orders["sla_breached"].dtype == np.float64
    for column in ("created_at", "due_at", "done_at", "canceled_at"):
        assert orders[column].dtype == "datetime64[ns, UTC]"
    assert all(isinstance(v, str) for v in orders["id"])
