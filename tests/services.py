"""Real services for integration tests: a fresh PostgreSQL database, a RabbitMQ vhost, moto's S3 server and
an `mlflow server` process. Each is created for the test run and removed after it. A service that is down
fails the test with its name (never a skip): `make test` starts them first."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.support import REPO_ROOT, VENV_BIN, free_port, http_ok, start_process, stop_process, wait_until

PG_ADMIN_URL = os.environ.get("OSML_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_HOST = os.environ.get("OSML_TEST_AMQP_HOST", "127.0.0.1:5672")


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@contextmanager
def fresh_database(prefix: str = "osml_test") -> Iterator[str]:
    """A new, empty PostgreSQL database; dropped afterwards. Yields a postgresql:// URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise RuntimeError(f"PostgreSQL is not reachable at {PG_ADMIN_URL} (run `make test`): {exc}") from exc
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(PG_ADMIN_URL, name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rabbitmqctl(*args: str) -> str:
    """Run `rabbitmqctl -q ARGS` against the local broker; its standard output."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise RuntimeError("rabbitmqctl not found: RabbitMQ must be installed locally for integration tests")
    return subprocess.run([ctl, "-q", *args], check=True, capture_output=True, timeout=60, text=True).stdout


@contextmanager
def fresh_vhost(prefix: str = "osml-test") -> Iterator[str]:
    """A new RabbitMQ vhost with guest permissions; deleted afterwards. Yields an amqp:// URL."""
    vhost = f"{prefix}-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{AMQP_HOST}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str
    env: dict[str, str]


@contextmanager
def s3_server(workdir: Path, bucket: str = "osml") -> Iterator[S3Server]:
    """moto's S3-compatible server as a real process on loopback, with one bucket."""
    import boto3

    port = free_port()
    proc = start_process([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log=workdir / "moto.log")
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL": endpoint,
    }
    try:
        wait_until(lambda: http_ok(f"{endpoint}/moto-api/"), timeout=30, what="moto S3 server")
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket=bucket)
        yield S3Server(endpoint_url=endpoint, bucket=bucket, env=env)
    finally:
        stop_process(proc)


@dataclass
class MlflowServer:
    url: str
    backend_store_uri: str
    artifacts_destination: str
    log: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    command: list[str] | None = None  # how to start it, when not plain `mlflow server`

    def start(self) -> None:
        self.proc = start_process(
            self.command
            or [
                str(VENV_BIN / "mlflow"),
                "server",
                "--backend-store-uri",
                self.backend_store_uri,
                "--artifacts-destination",
                self.artifacts_destination,
                "--serve-artifacts",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            log=self.log,
            # MLflow's GenAI job runner (seven extra processes, ~40 CPU-s per start) is unused by osml
            env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **self.env},
        )
        proc = self.proc

        def up_or_exited() -> str | None:
            if proc.poll() is not None:
                return "exited"
            return "up" if http_ok(f"{self.url}/health") else None

        if wait_until(up_or_exited, timeout=120, what=f"mlflow server (log: {self.log})") == "exited":
            raise RuntimeError(f"mlflow server exited during start-up; see {self.log}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


@contextmanager
def mlflow_server(
    workdir: Path, *, artifacts_destination: str | None = None, env: dict[str, str] | None = None
) -> Iterator[MlflowServer]:
    """A real `mlflow server` on a fresh PostgreSQL database; artifacts proxied to a local dir or S3."""
    with fresh_database("osml_mlflow") as db_url:
        server = MlflowServer(
            url="",
            backend_store_uri=db_url.replace("postgresql://", "postgresql+psycopg://", 1),
            artifacts_destination=artifacts_destination or str(workdir / "mlartifacts"),
            log=workdir / "mlflow-server.log",
            port=free_port(),
            env=env or {},
        )
        server.url = f"http://127.0.0.1:{server.port}"
        server.start()
        try:
            yield server
        finally:
            server.stop()


@dataclass(frozen=True)
class MlflowIdentity:
    username: str
    password: str

    @property
    def env(self) -> dict[str, str]:
        """What an MLflow client reads to log in as this identity."""
        return {"MLFLOW_TRACKING_USERNAME": self.username, "MLFLOW_TRACKING_PASSWORD": self.password}


@dataclass(frozen=True)
class MlflowIdentities:
    admin: MlflowIdentity
    writer: MlflowIdentity
    reader: MlflowIdentity


@contextmanager
def mlflow_basic_auth_server(
    workdir: Path, *, experiments: tuple[str, ...] = (), models: tuple[str, ...] = ()
) -> Iterator[tuple[MlflowServer, MlflowIdentities]]:
    """The deployed tracking server: `mlflow/server.sh serve` (basic-auth app), then `server.sh users`
    provisioning a writer that owns `experiments` and `models` and a reader."""
    identities = MlflowIdentities(
        admin=MlflowIdentity("admin", secrets.token_urlsafe(16)),
        writer=MlflowIdentity("osml-trainer", secrets.token_urlsafe(16)),
        reader=MlflowIdentity("osml-facade", secrets.token_urlsafe(16)),
    )
    server_sh = ["sh", str(REPO_ROOT / "mlflow" / "server.sh")]
    path = {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    with fresh_database("osml_mlflow") as db_url, fresh_database("osml_mlflow_auth") as auth_url:
        port = free_port()
        server = MlflowServer(
            url=f"http://127.0.0.1:{port}",
            backend_store_uri=db_url,
            artifacts_destination=str(workdir / "mlartifacts"),
            log=workdir / "mlflow-server.log",
            port=port,
            command=[*server_sh, "serve"],
            env={
                **path,
                "MLFLOW_BACKEND_STORE_URI": db_url.replace("postgresql://", "postgresql+psycopg://", 1),
                "MLFLOW_ARTIFACTS_DESTINATION": str(workdir / "mlartifacts"),
                "MLFLOW_AUTH_DATABASE_URI": auth_url.replace("postgresql://", "postgresql+psycopg://", 1),
                "MLFLOW_AUTH_ADMIN_USERNAME": identities.admin.username,
                "MLFLOW_AUTH_ADMIN_PASSWORD": identities.admin.password,
                "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(16),
                "MLFLOW_HOST": "127.0.0.1",
                "MLFLOW_PORT": str(port),
                "MLFLOW_WORKERS": "1",
            },
        )
        server.start()
        try:
            subprocess.run(
                [*server_sh, "users"],
                env={
                    **os.environ,
                    **path,
                    **identities.admin.env,
                    "MLFLOW_TRACKING_URI": server.url,
                    "MLFLOW_WRITER_USERNAME": identities.writer.username,
                    "MLFLOW_WRITER_PASSWORD": identities.writer.password,
                    "MLFLOW_READER_USERNAME": identities.reader.username,
                    "MLFLOW_READER_PASSWORD": identities.reader.password,
                    "MLFLOW_WRITER_EXPERIMENTS": ",".join(experiments),
                    "MLFLOW_WRITER_MODELS": ",".join(models),
                },
                check=True,
                capture_output=True,
                timeout=120,
            )
            yield server, identities
        finally:
            server.stop()
