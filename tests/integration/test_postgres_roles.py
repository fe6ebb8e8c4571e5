"""infra/postgres/roles.sql and grants.sql (what compose's PostgreSQL runs) on a scratch set of roles and
databases: each service's role reaches only its own tables, no service role can change the schema, and the
tracking server's role never sees osml's data."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from osml.job_store import JobStore, make_engine
from serving.shadow import ShadowSink
from tests.services import PG_ADMIN_URL
from tests.support import REPO_ROOT, VENV_BIN

pytestmark = pytest.mark.integration

SERVICES = ("mlflow", "migrate", "facade", "worker", "relay", "trainer", "live")
ROLES_SQL = REPO_ROOT / "infra" / "postgres" / "roles.sql"
GRANTS_SQL = REPO_ROOT / "infra" / "postgres" / "grants.sql"


def _url(database: str, role: str) -> str:
    base = PG_ADMIN_URL.rpartition("/")[0].split("://", 1)[1].split("@", 1)[1]
    return f"postgresql://{role}@{base}/{database}"


def _psql(url: str, script: Path, variables: dict[str, str]) -> None:
    flags = [arg for name, value in variables.items() for arg in ("-v", f"{name}={value}")]
    subprocess.run(["psql", "-q", url, *flags, "-f", str(script)], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def deployed() -> Iterator[dict[str, str]]:
    """The compose layout under unique names; yields the names (databases and roles)."""
    tag = f"osml_roles_{uuid.uuid4().hex[:8]}"
    names = {f"{service}_role": f"{tag}_{service}" for service in SERVICES}
    names |= {"mlflow_db": f"{tag}_mlflow", "mlflow_auth_db": f"{tag}_mlflow_auth", "osml_db": f"{tag}_osml"}
    passwords = {f"{service}_password": uuid.uuid4().hex for service in SERVICES}
    _psql(PG_ADMIN_URL, ROLES_SQL, names | passwords)
    try:
        migrate_url = _url(names["osml_db"], names["migrate_role"])
        subprocess.run(
            [str(VENV_BIN / "osml"), "migrate"],
            env={"PATH": str(VENV_BIN), "OSML_DATABASE_URL": migrate_url},
            check=True,
            capture_output=True,
            timeout=120,
        )
        _psql(migrate_url, GRANTS_SQL, {r: names[r] for r in ("worker_role", "relay_role", "live_role", "facade_role")})
        yield names
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            for database in (names["mlflow_db"], names["mlflow_auth_db"], names["osml_db"]):
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            for service in SERVICES:
                admin.execute(f'DROP ROLE IF EXISTS "{names[f"{service}_role"]}"')


def as_role(names: dict[str, str], service: str, database: str = "osml_db") -> psycopg.Connection:
    return psycopg.connect(_url(names[database], names[f"{service}_role"]), autocommit=True, connect_timeout=5)


def refused(names: dict[str, str], service: str, statement: str) -> bool:
    with as_role(names, service) as conn:
        try:
            conn.execute(statement)
        except psycopg.errors.InsufficientPrivilege:
            return True
    return False


OUTBOX_ROW = (
    "INSERT INTO outbox (event_id, source_event_id, routing_key, payload) "
    "VALUES (gen_random_uuid(), gen_random_uuid(), 'ML_PREDICTION_READY', '{}')"
)


PREDICTION_ROW = (
    "INSERT INTO orders_prediction (id, order_id, model_version, sla_risk, eta_minutes, predicted_at, event_id,"
    " features_snapshot, explanations) VALUES (gen_random_uuid(), gen_random_uuid(), '1', 0.5, 10, now(),"
    """ gen_random_uuid(), '{}', '{"slaRisk": {}, "etaMinutes": {}}')"""
)


def test_the_worker_inserts_predictions_and_events_and_nothing_more(deployed: dict[str, str]) -> None:
    with as_role(deployed, "worker") as worker:
        worker.execute(PREDICTION_ROW)  # every column the worker writes, explanations included
        worker.execute(OUTBOX_ROW)
        worker.execute("SELECT count(*) FROM orders_prediction")
    assert refused(deployed, "worker", "DELETE FROM outbox")
    assert refused(deployed, "worker", "UPDATE outbox SET sent_at = now()")
    assert refused(deployed, "worker", "CREATE TABLE planted (x int)")
    assert refused(deployed, "worker", "DROP TABLE orders_prediction")


def test_the_relay_marks_and_prunes_the_outbox_only(deployed: dict[str, str]) -> None:
    with as_role(deployed, "relay") as relay:
        relay.execute("UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL")
        relay.execute("DELETE FROM outbox WHERE sent_at < now() - interval '1 day'")
    assert refused(deployed, "relay", OUTBOX_ROW)
    assert refused(deployed, "relay", "SELECT count(*) FROM orders_prediction")
    assert refused(deployed, "relay", "CREATE TABLE planted (x int)")


def test_the_facade_keeps_its_job_table_and_reads_no_predictions(deployed: dict[str, str]) -> None:
    store = JobStore(make_engine(_url(deployed["osml_db"], deployed["facade_role"])))
    store.create_schema()
    job = store.create(dataset_ref="/data/orders.csv", train_config={})
    assert store.get(job.id) == job
    assert refused(deployed, "facade", "SELECT count(*) FROM orders_prediction")
    assert refused(deployed, "facade", "SELECT count(*) FROM outbox")
    assert refused(deployed, "worker", "SELECT count(*) FROM osml_training_jobs")


def test_the_shadow_rows_are_written_by_the_facade_and_the_worker_and_read_by_live_accuracy(
    deployed: dict[str, str],
) -> None:
    row = {
        "request_id": "r1",
        "order_id": "o1",
        "predicted_at": datetime.now(UTC),
        "production_version": "2026-05-01_001",
        "production_sla_risk": 0.25,
        "production_eta_minutes": 120,
        "challenger_version": "2026-05-01_002",
        "challenger_sla_risk": 0.5,
        "challenger_eta_minutes": 90,
    }
    for writer in ("facade", "worker"):
        sink = ShadowSink(make_engine(_url(deployed["osml_db"], deployed[f"{writer}_role"])))
        assert sink.write([{**row, "id": uuid.uuid4()}])
    with as_role(deployed, "live") as live:
        assert live.execute("SELECT count(*) FROM orders_prediction_shadow").fetchone() == (2,)
    assert refused(deployed, "facade", "SELECT count(*) FROM orders_prediction_shadow")
    assert refused(deployed, "live", "DELETE FROM orders_prediction_shadow")
    assert refused(deployed, "relay", "SELECT count(*) FROM orders_prediction_shadow")


def test_only_the_tracking_server_reaches_its_stores(deployed: dict[str, str]) -> None:
    with as_role(deployed, "mlflow", "mlflow_db") as mlflow:
        mlflow.execute("CREATE TABLE experiments_probe (x int)")  # its own: it creates its schema
    for service, database in (("mlflow", "osml_db"), ("worker", "mlflow_db"), ("facade", "mlflow_auth_db")):
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            as_role(deployed, service, database).close()
