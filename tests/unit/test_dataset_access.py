"""datasetRef policy: local paths inside the dataset roots (after symlinks), PostgreSQL hosts and S3 buckets on
their allow-lists, nothing of a refused or non-dataset file quoted back, and passwords masked wherever shown."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import orjson
import pytest

from osml.dataset_access import mask_secrets, without_masked_password
from osml.job_store import JobStore, make_engine
from osml.logs import JsonFormatter
from training.data.errors import DataError
from training.data.orders import load_orders, validate_ref

pytestmark = pytest.mark.unit

ORDERS = "id,category,priority,created_at\nOS-1,hvac,HIGH,2026-03-02T09:00:00Z\n"
SECRET_LINE = "root:x:0:0:root:/root:/bin/bash"


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An allowed root holding a good export, and a folder outside it holding a secret."""
    allowed, outside = tmp_path / "datasets", tmp_path / "host"
    (allowed / "export").mkdir(parents=True)
    (allowed / "export" / "orders.csv").write_text(ORDERS)
    outside.mkdir()
    (outside / "passwd").write_text(SECRET_LINE + "\n")
    monkeypatch.setenv("OSML_DATASET_ROOTS", str(allowed))
    return allowed, outside


def refusal(ref: str) -> str:
    with pytest.raises(DataError) as caught:
        load_orders(ref)
    return str(caught.value)


def test_a_path_outside_the_roots_is_refused_without_reading_it(roots: tuple[Path, Path]) -> None:
    _, outside = roots
    for ref in (str(outside / "passwd"), (outside / "passwd").as_uri(), "/etc/passwd"):
        message = refusal(ref)
        assert "outside the allowed dataset roots (OSML_DATASET_ROOTS)" in message
        assert "root:x" not in message
        with pytest.raises(DataError, match="outside the allowed dataset roots"):
            validate_ref(ref)


def test_symlinks_are_resolved_before_the_check(roots: tuple[Path, Path]) -> None:
    allowed, outside = roots
    (allowed / "innocent.csv").symlink_to(outside / "passwd")
    (allowed / "alias").symlink_to(allowed / "export", target_is_directory=True)
    assert "outside the allowed dataset roots" in refusal(str(allowed / "innocent.csv"))
    assert len(load_orders(str(allowed / "alias")).orders) == 1  # a link that stays inside is fine


def test_a_csv_link_out_of_a_dataset_folder_is_refused(roots: tuple[Path, Path]) -> None:
    allowed, outside = roots
    (allowed / "export" / "order_status_history.csv").symlink_to(outside / "passwd")
    for ref in (str(allowed / "export"), str(allowed / "export" / "orders.csv")):
        message = refusal(ref)
        assert "order_status_history.csv links outside the allowed dataset roots" in message


def test_a_root_given_through_a_link_still_admits_its_files(
    roots: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed, _ = roots
    (tmp_path / "link-to-datasets").symlink_to(allowed, target_is_directory=True)
    monkeypatch.setenv("OSML_DATASET_ROOTS", f"/nonexistent, {tmp_path / 'link-to-datasets'}")
    assert len(load_orders(str(allowed / "export" / "orders.csv")).orders) == 1


def test_a_file_that_is_not_an_export_is_not_quoted_back(roots: tuple[Path, Path]) -> None:
    allowed, outside = roots
    (allowed / "notes.csv").write_text((outside / "passwd").read_text())
    message = refusal(str(allowed / "notes.csv"))
    assert "missing required column(s) id, category, priority, created_at" in message
    assert "found: none of the known columns, and 1 other column(s)" in message
    assert "root:x" not in message and "bash" not in message


def test_postgres_hosts_must_be_allow_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSML_DATASET_HOSTS", "db.internal,127.0.0.1:5432")
    for ref in (
        "postgresql://u@db.internal/orders",
        "postgresql://u@db.internal:6543/orders",
        "postgresql://127.0.0.1",
    ):
        validate_ref(ref)
    refused = {
        "postgresql://u@10.0.0.7:6379/x": "host 10.0.0.7:6379 is not an allowed dataset host",
        "postgresql://u@127.0.0.1:6379/x": "host 127.0.0.1:6379 is not an allowed dataset host",
        "postgresql://u@db.internal/x?host=10.0.0.7": "host 10.0.0.7:5432 is not an allowed dataset host",
        "postgresql://u@db.internal/x?hostaddr=10.0.0.7": "host 10.0.0.7:5432 is not an allowed dataset host",
        "postgresql://u@db.internal,evil/x": "host evil:5432 is not an allowed dataset host",
        "postgresql://u@db.internal/x?passfile=/etc/passwd": "connection parameter(s) passfile are not allowed",
        "postgresql://u@db.internal/x?service=prod": "connection parameter(s) service are not allowed",
        "postgresql:///x": "must name its host",
    }
    for ref, message in refused.items():
        with pytest.raises(DataError, match=re.escape(message)):
            validate_ref(ref)
    monkeypatch.delenv("OSML_DATASET_HOSTS")
    with pytest.raises(DataError, match="not an allowed dataset host"):
        validate_ref("postgresql://u@127.0.0.1/x")  # none allowed until named


def test_s3_buckets_must_be_allow_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSML_DATASET_BUCKETS", "datasets")
    validate_ref("s3://datasets/exports/orders.csv")
    with pytest.raises(DataError, match="bucket 'mlartifacts' is not an allowed dataset bucket"):
        validate_ref("s3://mlartifacts/some-run/model.pkl")
    with pytest.raises(DataError, match="takes no credentials") as caught:
        validate_ref("s3://key:hunter2@datasets/orders.csv")
    assert "hunter2" not in str(caught.value)


def test_the_read_enforces_the_lists_of_the_reading_process(
    roots: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job accepted under one configuration is read under the trainer's: its lists decide."""
    allowed, _ = roots
    ref = str(allowed / "export" / "orders.csv")
    validate_ref(ref)
    monkeypatch.setenv("OSML_DATASET_ROOTS", str(allowed / "elsewhere"))
    assert "outside the allowed dataset roots" in refusal(ref)


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("postgresql://u:hunter2@db:5432/x", "postgresql://u:***@db:5432/x"),
        ("postgresql://u:p@ss@db/x", "postgresql://u:***@db/x"),
        ("postgresql://u@db/x?sslmode=require&password=hunter2", "postgresql://u@db/x?sslmode=require&password=***"),
        ("postgresql://u@db/x?PASSWORD=hunter2&sslpassword=k", "postgresql://u@db/x?PASSWORD=***&sslpassword=***"),
        (
            "cannot reach amqp://osml:hunter2@rabbit/osml (refused)",
            "cannot reach amqp://osml:***@rabbit/osml (refused)",
        ),
        ("host=db password=hunter2 dbname=x", "host=db password=*** dbname=x"),
        ("s3://bucket/a=b/orders.csv", "s3://bucket/a=b/orders.csv"),
        ("/data/user@example/orders.csv", "/data/user@example/orders.csv"),
    ],
)
def test_mask_secrets(raw: str, masked: str) -> None:
    assert mask_secrets(raw) == masked


def test_a_masked_reference_connects_with_the_readers_own_credentials() -> None:
    stored = mask_secrets("postgresql://u:hunter2@db/x?password=hunter3&sslmode=require")
    assert without_masked_password(stored) == "postgresql://u@db/x?sslmode=require"
    assert without_masked_password("postgresql://u:real@db/x") == "postgresql://u:real@db/x"


def test_the_job_store_keeps_no_password(tmp_path: Path) -> None:
    store = JobStore(make_engine(f"sqlite:///{tmp_path / 'jobs.db'}"))
    store.create_schema()
    job = store.create(dataset_ref="postgresql://u:hunter2@db/x?password=hunter3", train_config={})
    assert store.get(job.id) == job
    assert job.dataset_ref == "postgresql://u:***@db/x?password=***"
    assert b"hunter" not in (tmp_path / "jobs.db").read_bytes()


def test_log_lines_carry_no_password() -> None:
    try:
        raise ConnectionError("connect to postgresql://u:hunter2@db/x failed")
    except ConnectionError:
        record = logging.LogRecord("osml", logging.ERROR, __file__, 1, "queued %s", ("amqp://a:hunter3@b/",), None)
        record.exc_info = sys.exc_info()
    record.datasetRef = "postgresql://u@db/x?password=hunter4"
    line = JsonFormatter().format(record)
    assert "hunter" not in line
    assert orjson.loads(line)["datasetRef"] == "postgresql://u@db/x?password=***"
