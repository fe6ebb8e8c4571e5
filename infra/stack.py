"""Local stack launcher: the docker-compose topology on this machine, without Docker.

`make stack` (`python infra/stack.py up`) creates three PostgreSQL databases (tracking server, its user store,
osml) on the machine's server and a RabbitMQ vhost holding `infra/rabbitmq/definitions.json`, then starts moto's S3
server in place of MinIO, the MLflow tracking server through `mlflow/server.sh` (basic-auth app, PostgreSQL backend
store, artifacts proxied to S3) with its identities (`server.sh users`: the trainer writes, the facade reads),
`osml migrate`, the facade, a trainer, the worker and the relay. Each process gets its own process group and a log
under the stack directory (`.osml/stack/`); a state file records what was started so that `make stack-down`
(`python infra/stack.py down`) stops exactly that, drops the databases and the vhost, and leaves nothing behind.
Its registry starts empty, so `up` puts synthetic orders into the bucket, trains a pair from that `s3://` dataset
through the facade (`POST /train`, run by the trainer as the writer, xgboost only for speed) and activates it as the
writer (the facade's own identity may not move the alias): the stack serves as soon as `up` returns.

The end-to-end test (`tests/integration/test_stack.py`) drives the same functions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: `python infra/stack.py`
    sys.path.insert(0, str(REPO_ROOT))

import aio_pika  # noqa: E402
import httpx  # noqa: E402
import psycopg  # noqa: E402

from osml.processes import VENV_BIN, free_port, http_ok, start_process, wait_until  # noqa: E402
from worker.topology import REQUESTED_QUEUE  # noqa: E402

DEFAULT_DIR = REPO_ROOT / ".osml" / "stack"
STATE_FILE = "state.json"
PG_ADMIN_URL = os.environ.get("OSML_STACK_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_HOST = os.environ.get("OSML_STACK_AMQP_HOST", "127.0.0.1:5672")
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "stack", "AWS_SECRET_ACCESS_KEY": "stack", "AWS_DEFAULT_REGION": "us-east-1"}
DEFINITIONS = REPO_ROOT / "infra" / "rabbitmq" / "definitions.json"
ACCESS = REPO_ROOT / "infra" / "rabbitmq" / "access.sh"
COMPOSE_VHOST = "osml"
BROKER_USERS = ("worker", "relay", "backend", "admin")
MLFLOW_USERS = {"admin": "admin", "writer": "osml-trainer", "reader": "osml-facade"}
# what `up` trains: one model family is enough for a stack that serves (a job trains every family by default)
FAST_CANDIDATES = ("xgboost",)


class StackError(RuntimeError):
    """The stack could not be brought up (the message names the part and its log)."""


@dataclass
class Process:
    pid: int  # also the process group id: each component leads its own session
    started: str  # /proc start time, so that a recycled pid is never mistaken for ours
    log: str


@dataclass
class Stack:
    """What one `up` created; saved as JSON so that `down` (another process) can undo it exactly."""

    id: str
    dir: str
    bucket: str
    s3_url: str
    mlflow_url: str
    facade_url: str
    mlflow_database_url: str
    database_url: str
    vhost: str
    # the broker's users (infra/rabbitmq/access.sh): worker, relay, backend, and admin for the operator's tools
    broker_passwords: dict[str, str]
    predict_api_key: str
    admin_api_key: str
    webhook_secret: str
    # the tracking server's basic-auth app: its user store, the admin, the trainer (writer), the facade (reader)
    mlflow_auth_database_url: str
    mlflow_secret_key: str
    mlflow_admin_password: str
    mlflow_writer_password: str
    mlflow_reader_password: str
    processes: dict[str, Process] = field(default_factory=dict)
    model_version: str | None = None

    @property
    def state_file(self) -> Path:
        return Path(self.dir) / STATE_FILE

    def save(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.chmod(0o600)  # it holds the API keys
        tmp.replace(self.state_file)

    @classmethod
    def load(cls, directory: Path) -> Stack | None:
        path = directory / STATE_FILE
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        raw["processes"] = {name: Process(**p) for name, p in raw["processes"].items()}
        return cls(**raw)

    def log(self, component: str) -> Path:
        return Path(self.dir) / f"{component}.log"

    def broker_user(self, who: str) -> str:
        return f"{self.vhost}-{who}"

    def broker_url(self, who: str) -> str:
        """amqp:// URL of `worker`, `relay`, `backend` or `admin` on this stack's vhost."""
        return f"amqp://{self.broker_user(who)}:{self.broker_passwords[who]}@{AMQP_HOST}/{self.vhost}"

    def mlflow_identity(self, who: str) -> dict[str, str]:
        """MLFLOW_TRACKING_USERNAME/PASSWORD of `admin`, `writer` (the trainer) or `reader` (the facade)."""
        password = {
            "admin": self.mlflow_admin_password,
            "writer": self.mlflow_writer_password,
            "reader": self.mlflow_reader_password,
        }[who]
        return {"MLFLOW_TRACKING_USERNAME": MLFLOW_USERS[who], "MLFLOW_TRACKING_PASSWORD": password}

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"X-API-Key": self.admin_api_key}

    def s3_client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
        )


# --- the components: how each starts and how we know it is ready -------------------------------------------------


def _command_and_env(stack: Stack, component: str) -> tuple[list[str], dict[str, str]]:
    path = {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    osml = str(VENV_BIN / "osml")
    if component == "s3":
        port = str(_port(stack.s3_url))
        return [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", port], {}
    if component == "mlflow":
        return ["sh", str(REPO_ROOT / "mlflow" / "server.sh"), "serve"], {
            **path,
            **S3_CREDENTIALS,
            "MLFLOW_BACKEND_STORE_URI": _psycopg(stack.mlflow_database_url),
            "MLFLOW_AUTH_DATABASE_URI": _psycopg(stack.mlflow_auth_database_url),
            "MLFLOW_AUTH_ADMIN_USERNAME": MLFLOW_USERS["admin"],
            "MLFLOW_AUTH_ADMIN_PASSWORD": stack.mlflow_admin_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": stack.mlflow_secret_key,
            "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{stack.bucket}/mlartifacts",
            "MLFLOW_S3_ENDPOINT_URL": stack.s3_url,
            "MLFLOW_HOST": "127.0.0.1",
            "MLFLOW_PORT": str(_port(stack.mlflow_url)),
            "MLFLOW_WORKERS": "1",  # two shared cores on this machine
            # its registry webhook calls the facade over plain HTTP on loopback
            "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
            "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        }
    if component == "facade":
        return [osml, "serve"], {
            "OSML_HOST": "127.0.0.1",
            "OSML_PORT": str(_port(stack.facade_url)),
            "OSML_PREDICT_API_KEY": stack.predict_api_key,
            "OSML_ADMIN_API_KEY": stack.admin_api_key,
            "OSML_DATABASE_URL": stack.database_url,
            "MLFLOW_TRACKING_URI": stack.mlflow_url,
            # the facade reads the registry; the trainer logs in as the writer
            **stack.mlflow_identity("reader"),
            "OSML_DATASET_BUCKETS": stack.bucket,
            # no OSML_WEBHOOK_URL: only an admin may create webhooks, so `up` registers it; the facade checks
            # the deliveries' signatures
            "OSML_WEBHOOK_SECRET": stack.webhook_secret,
        }
    if component == "trainer":
        return [osml, "trainer"], {
            # datasets only (datasetRef=s3://...); artifacts go through the tracking server's proxy
            **S3_CREDENTIALS,
            "AWS_ENDPOINT_URL": stack.s3_url,
            "OSML_DATABASE_URL": stack.database_url,
            "MLFLOW_TRACKING_URI": stack.mlflow_url,
            **stack.mlflow_identity("writer"),
            "OSML_DATASET_BUCKETS": stack.bucket,
        }
    if component == "worker":
        return [osml, "worker"], {
            "OSML_BROKER_URL": stack.broker_url("worker"),
            "OSML_DATABASE_URL": stack.database_url,
            "OSML_FACADE_URL": stack.facade_url,
            "OSML_PREDICT_API_KEY": stack.predict_api_key,
            "OSML_MIGRATE_ON_START": "false",
        }
    if component == "relay":
        return [osml, "relay"], {
            "OSML_BROKER_URL": stack.broker_url("relay"),
            "OSML_DATABASE_URL": stack.database_url,
            "OSML_MIGRATE_ON_START": "false",
        }
    raise ValueError(f"unknown component {component!r}")


def _is_ready(stack: Stack, component: str) -> bool:
    if component == "s3":
        return http_ok(f"{stack.s3_url}/moto-api/")
    if component == "mlflow":
        return http_ok(f"{stack.mlflow_url}/health")
    if component == "facade":
        return http_ok(f"{stack.facade_url}/health")
    if component == "worker":  # consuming: its queue has a consumer
        return asyncio.run(_consumers(stack.broker_url("admin"), REQUESTED_QUEUE)) > 0
    if component == "relay":  # listening for the worker's outbox notifications
        return _sessions(stack, "query ILIKE 'LISTEN %%'") > 0
    if component == "trainer":  # connected to the job table (osml.job_store.make_engine names its sessions)
        return _sessions(stack, "application_name = 'osml-trainer'") > 0
    raise ValueError(f"unknown component {component!r}")


def _sessions(stack: Stack, condition: str) -> int:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            f"SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND {condition}",  # our constants only
            (_database_name(stack.database_url),),
        ).fetchone()
    return int(row[0]) if row else 0


READY_TIMEOUT_S = {"s3": 30.0, "mlflow": 90.0, "facade": 60.0, "trainer": 60.0, "worker": 60.0, "relay": 60.0}


def start(stack: Stack, component: str) -> None:
    """Start one component in its own process group and record it (it may not be ready yet)."""
    command, env = _command_and_env(stack, component)
    proc = start_process(command, log=stack.log(component), env=env, cwd=REPO_ROOT)
    stack.processes[component] = Process(pid=proc.pid, started=_start_time(proc.pid), log=str(stack.log(component)))
    stack.save()


def wait_ready(stack: Stack, component: str, *, timeout: float | None = None) -> None:
    process = stack.processes[component]

    def ready_or_exited() -> str | None:
        if not _alive(process):
            return "exited"
        return "ready" if _is_ready(stack, component) else None

    try:
        outcome = wait_until(
            ready_or_exited, timeout=timeout or READY_TIMEOUT_S[component], interval=0.25, what=component
        )
    except TimeoutError as exc:
        raise StackError(f"{component} is not ready: {exc}; see {process.log}:\n{_tail(Path(process.log))}") from exc
    if outcome == "exited":
        raise StackError(f"{component} exited during start-up; see {process.log}:\n{_tail(Path(process.log))}")


def stop(stack: Stack, *components: str, timeout: float = 20.0) -> None:
    """SIGTERM the components' process groups together, SIGKILL what is left after `timeout`; forget them."""
    groups: list[int] = []
    for component in components:
        process = stack.processes.pop(component, None)
        if process is not None and _alive(process):
            _signal_group(process.pid, signal.SIGTERM)
            groups.append(process.pid)
    # these are not (necessarily) our children: there is nothing to wait() on, so their groups are polled
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not any(group_alive(pgid) for pgid in groups), timeout=timeout, interval=0.1)
    survivors = [pgid for pgid in groups if group_alive(pgid)]
    for pgid in survivors:
        _signal_group(pgid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not any(group_alive(pgid) for pgid in survivors), timeout=5, what="killed processes")
    if Path(stack.dir).exists():
        stack.save()


# --- up / down ---------------------------------------------------------------------------------------------------


def new_stack(
    directory: Path,
    *,
    facade_port: int | None = None,
    mlflow_port: int | None = None,
    s3_port: int | None = None,
    bucket: str = "osml",
) -> Stack:
    stack_id = uuid.uuid4().hex[:8]
    vhost = f"osml-stack-{stack_id}"
    return Stack(
        id=stack_id,
        dir=str(directory.resolve()),
        bucket=bucket,
        s3_url=f"http://127.0.0.1:{s3_port or free_port()}",
        mlflow_url=f"http://127.0.0.1:{mlflow_port or free_port()}",
        facade_url=f"http://127.0.0.1:{facade_port or free_port()}",
        mlflow_database_url=_with_database(PG_ADMIN_URL, f"osml_stack_{stack_id}_mlflow"),
        mlflow_auth_database_url=_with_database(PG_ADMIN_URL, f"osml_stack_{stack_id}_mlflow_auth"),
        mlflow_secret_key=secrets.token_urlsafe(24),
        mlflow_admin_password=secrets.token_urlsafe(24),
        mlflow_writer_password=secrets.token_urlsafe(24),
        mlflow_reader_password=secrets.token_urlsafe(24),
        database_url=_with_database(PG_ADMIN_URL, f"osml_stack_{stack_id}"),
        vhost=vhost,
        broker_passwords={who: secrets.token_urlsafe(24) for who in BROKER_USERS},
        predict_api_key=secrets.token_urlsafe(24),
        admin_api_key=secrets.token_urlsafe(24),
        webhook_secret=secrets.token_urlsafe(24),
    )


def up(stack: Stack, *, train: bool = True, orders: int = 1000, progress: Callable[[str], None] = print) -> Stack:
    """Create the databases and the vhost, start every component, wait until each is ready; on any failure undo
    everything done so far and raise."""
    if (existing := Stack.load(Path(stack.dir))) is not None:
        raise StackError(f"a stack is already recorded in {existing.state_file}; run `make stack-down` first")
    stack.save()
    try:
        # the tracking server's first start (creating its schema) is the long pole: everything else overlaps it
        _create_database(stack.mlflow_database_url)
        _create_database(stack.mlflow_auth_database_url)
        start(stack, "mlflow")
        _create_database(stack.database_url)
        start(stack, "s3")
        progress(f"databases {_database_name(stack.mlflow_database_url)}, {_database_name(stack.database_url)}")
        _create_vhost(stack)
        progress(f"vhost {stack.vhost} with {DEFINITIONS.relative_to(REPO_ROOT)} and the users of {ACCESS.name}")
        _migrate(stack)
        for component in ("worker", "relay"):  # the worker calls the facade only once events arrive
            start(stack, component)
        wait_ready(stack, "s3")
        stack.s3_client().create_bucket(Bucket=stack.bucket)
        if train:  # a new stack's registry is empty: the facade needs a pair to serve
            dataset_ref = put_synthetic_dataset(stack, orders=orders, seed=7)
            progress(f"{orders} synthetic orders in {dataset_ref}")
        wait_ready(stack, "mlflow")
        provision_mlflow_users(stack)
        progress(
            f"tracking server {stack.mlflow_url} (artifacts s3://{stack.bucket}/mlartifacts; basic auth: "
            f"{MLFLOW_USERS['writer']} writes, {MLFLOW_USERS['reader']} reads)"
        )
        start(stack, "facade")
        start(stack, "trainer")
        for component in ("worker", "relay", "facade", "trainer"):
            wait_ready(stack, component)
        progress(f"facade {stack.facade_url}, a trainer, worker and relay on vhost {stack.vhost}")
        if train:
            progress(f"training through POST /train (candidates: {', '.join(FAST_CANDIDATES)})")
            version = str(train_through_facade(stack, dataset_ref, candidates=FAST_CANDIDATES)["modelVersion"])
            activate(stack, version)
            progress(f"activated {version} as {MLFLOW_USERS['writer']}")
    except BaseException:
        down(stack)
        raise
    return stack


def down(stack: Stack) -> None:
    """Stop every recorded process, drop the databases and the vhost, forget the state."""
    stop(stack, *reversed(list(stack.processes)))
    for url in (stack.database_url, stack.mlflow_database_url, stack.mlflow_auth_database_url):
        with contextlib.suppress(psycopg.OperationalError):
            _drop_database(url)
    with contextlib.suppress(StackError):
        _rabbitmqctl("delete_vhost", stack.vhost)
    for who in BROKER_USERS:
        with contextlib.suppress(StackError):
            _rabbitmqctl("delete_user", stack.broker_user(who))
    stack.state_file.unlink(missing_ok=True)


# --- training through the facade ---------------------------------------------------------------------------------


def put_synthetic_dataset(stack: Stack, *, orders: int, seed: int) -> str:
    """Generate synthetic orders, put orders.csv into the bucket; returns its `s3://` datasetRef."""
    from training.data.synthetic import generate, write_csv

    with tempfile.TemporaryDirectory(prefix="osml-stack-") as tmp:
        paths = write_csv(generate(orders=orders, seed=seed), Path(tmp))
        orders_csv = next(p for p in paths if p.name == "orders.csv")
        key = f"datasets/synthetic-{seed}-{orders}/orders.csv"
        stack.s3_client().upload_file(str(orders_csv), stack.bucket, key)
    return f"s3://{stack.bucket}/{key}"


def train_through_facade(
    stack: Stack, dataset_ref: str, *, candidates: tuple[str, ...] | None = None, timeout: float = 300.0
) -> dict[str, Any]:
    """POST /train, poll the job until it is done; returns the finished job (modelVersion, metrics...)."""
    body: dict[str, Any] = {"datasetRef": dataset_ref}
    if candidates:
        body["trainConfig"] = {"candidates": list(candidates)}
    response = httpx.post(f"{stack.facade_url}/train", json=body, headers=stack.admin_headers, timeout=30)
    if response.status_code != 202:
        raise StackError(f"POST /train answered {response.status_code}: {response.text}")
    job_url = f"{stack.facade_url}/train/jobs/{response.json()['jobId']}"

    def finished() -> dict[str, Any] | None:
        job: dict[str, Any] = httpx.get(job_url, headers=stack.admin_headers, timeout=10).json()
        return job if job["status"] in ("done", "failed") else None

    job = wait_until(finished, timeout=timeout, interval=0.5, what="the training job")
    if job is None or job["status"] != "done":
        raise StackError(f"training job failed: {job}; see {stack.log('trainer')}")
    return job


def activate(stack: Stack, model_version: str, *, timeout: float = 60.0) -> None:
    """Point `production` at the pair as the writer (the facade's identity only reads), then wait until the
    facade serves it (the registry webhook tells it at once)."""
    from mlflow import MlflowClient

    from osml import registry

    with mlflow_identity(stack, "writer"):
        registry.activate(MlflowClient(stack.mlflow_url, registry_uri=stack.mlflow_url), model_version)
    wait_until(lambda: _serving(stack) == model_version, timeout=timeout, interval=0.25, what=f"{model_version}")
    stack.model_version = model_version
    stack.save()


def _serving(stack: Stack) -> str | None:
    response = httpx.get(f"{stack.facade_url}/health/ready", timeout=5)
    return str(response.json()["modelVersion"]) if response.status_code == 200 else None


# --- the tracking server's identities ----------------------------------------------------------------------------


@contextlib.contextmanager
def mlflow_identity(stack: Stack, who: str) -> Iterator[None]:
    """Log this process's MLflow clients in as `who` for the block (MLflow reads the identity from the
    environment at each request)."""
    saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update(stack.mlflow_identity(who))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def provision_mlflow_users(stack: Stack) -> None:
    """`mlflow/server.sh users` as the admin (the compose file's one-shot job), then the registry webhook, which
    only an admin may create."""
    from mlflow import MlflowClient

    from osml.conventions import EXPERIMENT_NAME, MODEL_NAMES
    from serving import webhook

    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **stack.mlflow_identity("admin"),
        "MLFLOW_TRACKING_URI": stack.mlflow_url,
        "MLFLOW_WRITER_USERNAME": MLFLOW_USERS["writer"],
        "MLFLOW_WRITER_PASSWORD": stack.mlflow_writer_password,
        "MLFLOW_READER_USERNAME": MLFLOW_USERS["reader"],
        "MLFLOW_READER_PASSWORD": stack.mlflow_reader_password,
        "MLFLOW_WRITER_EXPERIMENTS": EXPERIMENT_NAME,
        "MLFLOW_WRITER_MODELS": ",".join(MODEL_NAMES),
    }
    command = ["sh", str(REPO_ROOT / "mlflow" / "server.sh"), "users"]
    with stack.log("mlflow-users").open("ab") as log:
        result = subprocess.run(command, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=120)
    if result.returncode != 0:
        raise StackError(f"mlflow users failed; see {stack.log('mlflow-users')}:\n{_tail(stack.log('mlflow-users'))}")
    with mlflow_identity(stack, "admin"):
        webhook.register(
            MlflowClient(stack.mlflow_url, registry_uri=stack.mlflow_url),
            url=f"{stack.facade_url}/models/webhook",
            secret=stack.webhook_secret,
        )


# --- PostgreSQL, RabbitMQ, processes -----------------------------------------------------------------------------


def _psycopg(url: str) -> str:
    """The SQLAlchemy spelling MLflow's stores take."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _with_database(url: str, name: str) -> str:
    return f"{url.rpartition('/')[0]}/{name}"


def _database_name(url: str) -> str:
    return url.rpartition("/")[2]


def _create_database(url: str) -> None:
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{_database_name(url)}"')
    except psycopg.OperationalError as exc:
        raise StackError(f"PostgreSQL is not reachable at {PG_ADMIN_URL} (`make services` starts it): {exc}") from exc


def _drop_database(url: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{_database_name(url)}" WITH (FORCE)')


def _rabbitmqctl(*args: str) -> str:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise StackError("rabbitmqctl not found: the local stack uses the machine's RabbitMQ")
    result = subprocess.run([ctl, "-q", *args], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise StackError(f"rabbitmqctl {' '.join(args)}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


async def _consumers(broker_url: str, queue: str) -> int:
    connection = await aio_pika.connect(broker_url, timeout=5)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.consumer_count or 0)


def _create_vhost(stack: Stack) -> None:
    """The compose file's definitions, imported into this stack's own vhost (the worker then declares the same
    topology on top: a mismatch between the two fails its start-up here rather than in production), and its users
    as `infra/rabbitmq/access.sh` renders them for compose."""
    definitions = json.loads(DEFINITIONS.read_text())
    for section in definitions.values():
        for item in section:
            if item.get("vhost", item.get("name")) == COMPOSE_VHOST:
                item["vhost" if "vhost" in item else "name"] = stack.vhost
    _import_definitions(definitions)
    env = {"PATH": os.environ.get("PATH", ""), "RABBITMQ_VHOST": stack.vhost}
    for who in BROKER_USERS:
        prefix = "RABBITMQ" if who == "admin" else f"RABBITMQ_{who.upper()}"
        env |= {f"{prefix}_USER": stack.broker_user(who), f"{prefix}_PASSWORD": stack.broker_passwords[who]}
    rendered = subprocess.run(["sh", str(ACCESS)], env=env, capture_output=True, text=True, check=True, timeout=30)
    _import_definitions(json.loads(rendered.stdout))


def _import_definitions(definitions: dict[str, Any]) -> None:
    # not delete=True: rabbitmqctl opens the file by name, as the broker's user
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as out:
        os.chmod(out.name, 0o644)
        json.dump(definitions, out)
    try:
        _rabbitmqctl("import_definitions", out.name)
    finally:
        os.unlink(out.name)


def _migrate(stack: Stack) -> None:
    """`osml migrate`, the compose file's one-shot job."""
    command = [str(VENV_BIN / "osml"), "migrate"]
    env = {**os.environ, "OSML_DATABASE_URL": stack.database_url}
    with stack.log("migrate").open("ab") as log:
        result = subprocess.run(command, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=120)
    if result.returncode != 0:
        raise StackError(f"osml migrate failed; see {stack.log('migrate')}:\n{_tail(stack.log('migrate'))}")


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def _start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat (after the parenthesised command name, which may hold spaces)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(process: Process) -> bool:
    """The recorded group leader still runs (and is the same process, not a recycled pid)."""
    return _start_time(process.pid) == process.started and group_alive(process.pid)


def _group_members(pgid: int) -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:  # state, ..., pgrp; zombies are already dead
                yield int(entry.name)


def group_alive(pgid: int) -> bool:
    return next(_group_members(pgid), None) is not None


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _preferred_port(port: int) -> int:
    """`port` when it is free on loopback, else any free one (a developer may run `make up` beside the stack)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


# --- command line ------------------------------------------------------------------------------------------------


def describe(stack: Stack) -> str:
    rel = Path(stack.dir).relative_to(REPO_ROOT) if Path(stack.dir).is_relative_to(REPO_ROOT) else Path(stack.dir)
    rows = [
        ("facade (osml serve)", stack.facade_url, "facade.log"),
        ("trainer (osml trainer)", "runs POST /train jobs", "trainer.log"),
        ("MLflow UI + tracking API", stack.mlflow_url, "mlflow.log"),
        ("S3 (moto, MinIO's stand-in)", f"{stack.s3_url}  bucket {stack.bucket}", "s3.log"),
        ("worker (osml worker)", f"vhost {stack.vhost} as {stack.broker_user('worker')}", "worker.log"),
        ("relay (osml relay)", "outbox -> exchange osml.events", "relay.log"),
        ("PostgreSQL osml / mlflow", f"{stack.database_url}  +  {_database_name(stack.mlflow_database_url)}", ""),
    ]
    lines = [f"  {name:<28} {where:<60} {(rel / log) if log else ''}" for name, where, log in rows]
    lines.append(f"  active model version: {stack.model_version or 'none'}")
    lines.append(f"  API keys (X-API-Key): predict {stack.predict_api_key}  admin {stack.admin_api_key}")
    lines.append(f"  state: {stack.state_file}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="infra/stack.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="logs and state (default .osml/stack)")
    sub = parser.add_subparsers(dest="action", required=True)
    up_parser = sub.add_parser("up", help="start the stack and wait until every part is ready")
    up_parser.add_argument("--facade-port", type=int, default=8000, help="preferred port (default 8000)")
    up_parser.add_argument("--mlflow-port", type=int, default=5000, help="preferred port (default 5000)")
    up_parser.add_argument("--s3-port", type=int, default=9000, help="preferred port (default 9000)")
    up_parser.add_argument("--no-train", action="store_true", help="do not train when the registry is empty")
    sub.add_parser("down", help="stop what `up` started, drop its databases and vhost")
    sub.add_parser("status", help="where each part listens")
    args = parser.parse_args(argv)

    if args.action == "up":
        began = time.monotonic()
        stack = new_stack(
            args.dir,
            facade_port=_preferred_port(args.facade_port),
            mlflow_port=_preferred_port(args.mlflow_port),
            s3_port=_preferred_port(args.s3_port),
        )
        try:
            up(
                stack,
                train=not args.no_train,
                progress=lambda message: print(f"  [{time.monotonic() - began:5.1f} s] {message}", flush=True),
            )
        except StackError as exc:
            print(f"stack failed to start (everything it started is stopped again): {exc}", file=sys.stderr)
            return 1
        print(f"osml local stack {stack.id} is up after {time.monotonic() - began:.1f} s:\n{describe(stack)}")
        print("stop it with: make stack-down")
        return 0
    recorded = Stack.load(args.dir)
    if recorded is None:
        print(f"no stack recorded in {args.dir}")
        return 0
    if args.action == "status":
        running = [name for name, p in recorded.processes.items() if _alive(p)]
        print(f"osml local stack {recorded.id}; running: {', '.join(running) or 'nothing'}\n{describe(recorded)}")
        return 0
    down(recorded)
    print(f"osml local stack {recorded.id} stopped; databases and vhost {recorded.vhost} dropped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
