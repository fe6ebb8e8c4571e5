"""Remote data sources against real servers: s3:// on moto's S3 server, postgresql:// on a fresh database."""

from __future__ import annotations

import json
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pandas as pd
import psycopg
import pytest

from tests.services import S3Server, s3_server
from tests.support import VENV_BIN
from training.data.canonical import OrdersData
from training.data.errors import DataError
from training.data.orders import load_orders
from training.data.synthetic import generate, load_into_postgres, write_csv

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def generated() -> OrdersData:
    return generate(orders=800, seed=21)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory, generated: OrdersData) -> Iterator[S3Server]:
    """One moto server for the module, holding the export as a prefix, a zip, a single CSV and a broken CSV."""
    workdir = tmp_path_factory.mktemp("s3")
    with s3_server(workdir) as server:
        client = boto3.client("s3", endpoint_url=server.endpoint_url, **_credentials(server))
        files = write_csv(generated, workdir / "export")
        for path in files:
            client.upload_file(str(path), server.bucket, f"exports/2026-03/{path.name}")
        archive = workdir / "export.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for path in files:
                zf.write(path, f"dump/{path.name}")
        client.upload_file(str(archive), server.bucket, "archives/export.zip")
        client.upload_file(str(files[0]), server.bucket, "single/orders.csv")
        broken = pd.read_csv(files[0], dtype=str)
        broken.loc[2, "priority"] = "SOON"  # data row 3
        client.put_object(Bucket=server.bucket, Key="broken/orders.csv", Body=broken.to_csv(index=False).encode())
        yield server


def _credentials(server: S3Server) -> dict[str, str]:
    return {
        "aws_access_key_id": server.env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": server.env["AWS_SECRET_ACCESS_KEY"],
        "region_name": server.env["AWS_DEFAULT_REGION"],
    }


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    return s3


@pytest.mark.parametrize("key", ["exports/2026-03", "exports/2026-03/", "archives/export.zip"])
def test_s3_prefix_and_zip(s3_env: S3Server, generated: OrdersData, key: str) -> None:
    ref = f"s3://{s3_env.bucket}/{key}"
    data = load_orders(ref)
    assert data.source == ref
    pd.testing.assert_frame_equal(data.orders, generated.orders)
    assert data.history is not None and generated.history is not None
    pd.testing.assert_frame_equal(data.history, generated.history)


def test_s3_single_object_without_history(s3_env: S3Server, generated: OrdersData) -> None:
    data = load_orders(f"s3://{s3_env.bucket}/single/orders.csv")
    pd.testing.assert_frame_equal(data.orders, generated.orders)
    assert data.history is None


def test_s3_endpoint_from_aws_endpoint_url(s3_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL")
    assert len(load_orders(f"s3://{s3_env.bucket}/single/orders.csv").orders) == 800


def test_s3_errors_name_the_object(s3_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = s3_env.bucket
    with pytest.raises(DataError) as caught:
        load_orders(f"s3://{bucket}/broken/orders.csv")
    assert caught.value.source == f"s3://{bucket}/broken/orders.csv"
    assert (caught.value.column, caught.value.row) == ("priority", 3)
    assert "unknown priority 'SOON'" in str(caught.value)

    with pytest.raises(DataError, match=f"s3://{bucket}/nothing-here: no such object, and no CSV files"):
        load_orders(f"s3://{bucket}/nothing-here")
    monkeypatch.setenv("OSML_DATASET_BUCKETS", f"{bucket},no-such-bucket")
    with pytest.raises(DataError, match=r"cannot read from S3: .*NoSuchBucket"):
        load_orders("s3://no-such-bucket/orders.csv")


def test_postgres_source_reads_the_backend_tables(pg_database: str, generated: OrdersData) -> None:
    load_into_postgres(generated, pg_database)
    load_into_postgres(generated, pg_database)  # replacing earlier tables is fine
    data = load_orders(pg_database)
    assert data.source == pg_database
    pd.testing.assert_frame_equal(data.orders.sort_values("id", ignore_index=True), generated.orders)
    assert data.history is not None and generated.history is not None
    history = data.history.sort_values(["order_id", "changed_at"], kind="stable", ignore_index=True)
    expected = generated.history.sort_values(["order_id", "changed_at"], kind="stable", ignore_index=True)
    pd.testing.assert_frame_equal(history, expected)


def test_osml_generate_into_postgres(pg_database: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "osml"), "generate", "--orders", "300", "--seed", "5", "--postgres", pg_database],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "orders": 300,
        "seed": 5,
        "postgres": pg_database,
    }
    with psycopg.connect(pg_database) as conn:
        counts = conn.execute("SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_status_history)")
        orders_count, history_count = counts.fetchone() or (0, 0)
    expected = generate(orders=300, seed=5)
    assert expected.history is not None
    assert (orders_count, history_count) == (300, len(expected.history))
    pd.testing.assert_frame_equal(load_orders(pg_database).orders.sort_values("id", ignore_index=True), expected.orders)


def test_postgres_errors(pg_database: str) -> None:
    with pytest.raises(DataError, match="table 'orders' does not exist"):
        load_orders(pg_database)
    with psycopg.connect(pg_database) as conn:
        conn.execute('CREATE TABLE orders (id bigint, category text, priority text, "createdAt" timestamp)')
        conn.execute("INSERT INTO orders VALUES (1, 'hvac', 'LOW', '2026-03-02 09:00'), (2, 'hvac', 'ASAP', now())")
    with pytest.raises(DataError) as caught:
        load_orders(pg_database)
    assert caught.value.source == f"{pg_database} table orders"
    assert caught.value.column == "priority"
    assert "unknown priority 'ASAP'" in str(caught.value) and "(id 2)" in str(caught.value)

    with psycopg.connect(pg_database) as conn:
        conn.execute("UPDATE orders SET priority = 'high' WHERE id = 2")
    data = load_orders(pg_database)  # camelCase columns, integer ids, naive timestamps as UTC
    assert data.history is None
    assert data.orders.set_index("id").loc["1", "created_at"] == pd.Timestamp("2026-03-02T09:00:00Z")

    unreachable = "postgresql://postgres:hunter2@127.0.0.1:1/nowhere"
    with pytest.raises(DataError, match="cannot read the database") as caught:
        load_orders(unreachable)
    assert "hunter2" not in str(caught.value)
