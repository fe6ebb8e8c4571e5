"""The event path's test harness, shared by the worker's integration modules: a real facade (`osml serve`, a pair
trained on synthetic data in an embedded tracking store, one for the session), the test's own AMQP connection
playing the backend, and `osml worker` / `osml relay` processes on a fresh RabbitMQ vhost and PostgreSQL database
per test. Everything is awaited by polling with deadlines.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import httpx
import orjson
import psycopg
import pytest
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest_training import train_fast_pair
from tests.services import rabbitmqctl
from tests.support import VENV_BIN, free_port, start_process, stop_process, wait_until
from worker.simulator import generate_orders
from worker.topology import EXCHANGE, READY_KEY, REQUESTED_KEY, REQUESTED_QUEUE
from worker.topology import declare as declare_topology

T = TypeVar("T")
PREDICT_KEY = "worker-test-predict-key"
COLLECTOR_QUEUE = "test.ready-collector"
DEADLINE_S = 180.0

# ---------------------------------------------------------------- facade


@dataclass
class Facade:
    """A real `osml serve` process on a fixed free port, so it can be stopped and started again."""

    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = start_process(
            [str(VENV_BIN / "osml"), "serve", "--port", str(self.port)], log=self.log, env=self.env
        )
        wait_until(self._ready, timeout=120, what=f"facade ready (log: {self.log})")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"facade exited with {self.proc.returncode}; log: {self.log}")
        try:
            return httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def active_version(self) -> str:
        return str(httpx.get(f"{self.url}/health/ready", timeout=5).json()["modelVersion"])

    def predict_batch(self, items: list[tuple[str, dict[str, Any]]], *, explain: int = 0) -> list[dict[str, Any]]:
        """The facade's answers through /predict/batch, the endpoint the worker uses (`?explain=k` if k > 0)."""
        response = httpx.post(
            f"{self.url}/predict/batch",
            params={"explain": explain} if explain else None,
            json={"items": [{"requestId": "check", "orderId": o, "features": f} for o, f in items]},
            headers={"X-API-Key": self.env["OSML_PREDICT_API_KEY"]},  # the key it runs with (it may be rotated)
            timeout=30,
        )
        response.raise_for_status()
        return list(response.json()["items"])


@pytest.fixture(scope="session")
def facade(tmp_path_factory: pytest.TempPathFactory, synthetic_csv: Path) -> Iterator[Facade]:
    """One facade for the worker's modules, serving a pair trained on synthetic data in an embedded tracking store."""
    workdir = tmp_path_factory.mktemp("worker-facade")
    tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
    train_fast_pair(synthetic_csv, tracking_uri)
    server = Facade(
        env={
            "MLFLOW_TRACKING_URI": tracking_uri,
            "OSML_PREDICT_API_KEY": PREDICT_KEY,
            "OSML_ADMIN_API_KEY": "worker-test-admin-key",
            "OSML_DATABASE_URL": f"sqlite:///{workdir / 'jobs.db'}",
        },
        log=workdir / "facade.log",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- broker (an event loop in a thread)


class Broker:
    """The test's own AMQP connection, driven from synchronous test code."""

    def __init__(self, url: str, *, collect: bool = True) -> None:
        """`collect`: bind the READY collector queue now (else later, with `collect_ready`)."""
        self.url = url
        self._collect = collect
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._connection: AbstractRobustConnection = self.run(aio_pika.connect_robust(url))
        self._channel: AbstractChannel = self.run(self._open_channel())

    async def _open_channel(self) -> AbstractChannel:
        channel = await self._connection.channel(publisher_confirms=True)
        await declare_topology(self._connection, channel)
        if self._collect:
            await self._bind_collector(channel)
        return channel

    async def _bind_collector(self, channel: AbstractChannel) -> None:
        collector = await channel.declare_queue(COLLECTOR_QUEUE, durable=True)
        await collector.bind(EXCHANGE, routing_key=READY_KEY)

    def collect_ready(self) -> None:
        self.run(self._bind_collector(self._channel))

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        self.run(self._connection.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def publish(self, bodies: list[bytes]) -> None:
        self.run(self._publish(bodies))

    async def _publish(self, bodies: list[bytes]) -> None:
        exchange = await self._channel.get_exchange("osml.events")
        for start in range(0, len(bodies), 200):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(body, content_type="application/json", delivery_mode=2),
                        routing_key=REQUESTED_KEY,
                    )
                    for body in bodies[start : start + 200]
                )
            )

    def ready_count(self, queue: str) -> int:
        """Messages ready in `queue` (confirmed publishes are already counted)."""
        return self.run(self._count(queue))

    async def _count(self, name: str) -> int:
        # re-declaring the queue (same arguments) answers its current depth; a passive declare on a robust
        # channel would only return the cached object
        queue = await self._channel.get_queue(name)
        return int((await queue.declare()).message_count or 0)

    def drain(self, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
        return self.run(self._drain(queue))

    async def _drain(self, name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
        queue = await self._channel.get_queue(name)
        messages = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            messages.append(message)
        return messages


def queue_column(vhost: str, queue: str, column: str) -> int:
    """One numeric column of `rabbitmqctl list_queues` for a queue (0 when the queue does not exist yet)."""
    out = rabbitmqctl("list_queues", "-p", vhost, "name", column, "--formatter", "json")
    return next((int(q[column]) for q in json.loads(out) if q["name"] == queue), 0)


def queue_depth(vhost: str, queue: str) -> int:
    """Ready + unacknowledged messages of a queue, straight from the broker."""
    return queue_column(vhost, queue, "messages")


# ---------------------------------------------------------------- the pipeline under test


@dataclass
class Pipeline:
    amqp_url: str
    database_url: str
    facade: Facade
    workdir: Path
    broker: Broker
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # /metrics port of each process started, by pid
    metrics_ports: dict[int, int] = field(default_factory=dict)
    # where the processes reach RabbitMQ and PostgreSQL (a fault-injecting proxy in the chaos tests)
    service_amqp_url: str | None = None
    service_database_url: str | None = None

    @property
    def vhost(self) -> str:
        return self.amqp_url.rsplit("/", 1)[1]

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "OSML_BROKER_URL": self.service_amqp_url or self.amqp_url,
            "OSML_DATABASE_URL": self.service_database_url or self.database_url,
            "OSML_FACADE_URL": self.facade.url,
            "OSML_PREDICT_API_KEY": PREDICT_KEY,
            # quick recovery once a dependency is back
            "OSML_RETRY_MAX_S": "0.5",
            "OSML_BREAKER_RESET_S": "0.5",
            **extra,
        }

    def start(self, command: str, **extra: str) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{command}-{len(self.procs)}.log"
        port = free_port()
        ports = {"OSML_WORKER_METRICS_PORT": str(port), "OSML_RELAY_METRICS_PORT": str(port)}
        proc = start_process([str(VENV_BIN / "osml"), command], log=log, env=self.env(**{**ports, **extra}))
        self.procs.append(proc)
        self.metrics_ports[proc.pid] = port
        return proc

    def metrics(self, proc: subprocess.Popen[bytes]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The process's /metrics samples: (name, sorted labels) -> value."""
        text = httpx.get(f"http://127.0.0.1:{self.metrics_ports[proc.pid]}/metrics", timeout=5).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def start_relay(self, **extra: str) -> subprocess.Popen[bytes]:
        log = self.workdir / f"relay-{len(self.procs)}.log"
        proc = self.start("relay", **extra)
        wait_until(lambda: "relay connected" in log.read_text(), timeout=60, what=f"relay connected ({log})")
        return proc

    def start_worker(self, **extra: str) -> subprocess.Popen[bytes]:
        proc = self.start("worker", **extra)
        # consuming once its queue has a consumer
        wait_until(lambda: self._consumers(REQUESTED_QUEUE) > 0, timeout=60, what="worker consuming")
        return proc

    def _consumers(self, queue: str) -> int:
        return queue_column(self.vhost, queue, "consumers")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(sql).fetchall()

    def scalar(self, sql: str) -> Any:
        return self.query(sql)[0][0]

    def rows(self) -> int:
        try:
            return int(self.scalar("SELECT count(*) FROM orders_prediction"))
        except psycopg.errors.UndefinedTable:
            return 0

    def wait_rows(self, n: int, timeout: float = DEADLINE_S) -> None:
        wait_until(lambda: self.rows() == n, timeout=timeout, what=f"{n} predictions stored (have {self.rows()})")

    def wait_settled(self, expected_rows: int, timeout: float = DEADLINE_S) -> None:
        """Every message consumed and acked, every prediction stored and every outbox row sent, within `timeout`."""
        deadline = time.monotonic() + timeout
        self.wait_rows(expected_rows, timeout=timeout)
        wait_until(
            lambda: queue_depth(self.vhost, REQUESTED_QUEUE) == 0,
            timeout=max(0.0, deadline - time.monotonic()),
            what="the REQUESTED queue drained and acked",
        )
        wait_until(
            lambda: self.scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0,
            timeout=max(0.0, deadline - time.monotonic()),
            what="outbox fully relayed",
        )

    def ready_events(self) -> list[dict[str, Any]]:
        messages = self.broker.drain(COLLECTOR_QUEUE)
        return [orjson.loads(m.body) for m in messages]

    def stop_all(self) -> None:
        for proc in self.procs:
            stop_process(proc)


@contextmanager
def open_pipeline(
    amqp_url: str, database_url: str, facade: Facade, workdir: Path, *, collect: bool = True
) -> Iterator[Pipeline]:
    """A pipeline on that vhost and database; `collect`: bind the backend's READY queue from the start."""
    broker = Broker(amqp_url, collect=collect)
    pipe = Pipeline(amqp_url=amqp_url, database_url=database_url, facade=facade, workdir=workdir, broker=broker)
    try:
        yield pipe
    finally:
        pipe.stop_all()
        broker.close()


@pytest.fixture
def pipeline(amqp_url: str, pg_database: str, facade: Facade, tmp_path: Path) -> Iterator[Pipeline]:
    """The pipeline of one test; the backend's READY queue is bound from the start."""
    with open_pipeline(amqp_url, pg_database, facade, tmp_path, collect=True) as pipe:
        yield pipe


@pytest.fixture
def pipeline_without_ready_queue(amqp_url: str, pg_database: str, facade: Facade, tmp_path: Path) -> Iterator[Pipeline]:
    """A pipeline whose backend has not bound its READY queue yet (`pipe.broker.collect_ready()` binds it)."""
    with open_pipeline(amqp_url, pg_database, facade, tmp_path, collect=False) as pipe:
        yield pipe


def requested_events(count: int, *, seed: int) -> list[tuple[str, bytes, dict[str, Any]]]:
    """(orderId, body, features) of `count` valid REQUESTED events."""
    orders = generate_orders(count, seed=seed)
    return [(o.id, o.requested_event(), o.features()) for o in orders]


def check_ready_events(
    pipe: Pipeline, events: list[tuple[str, bytes, dict[str, Any]]], *, exactly_once: bool = True
) -> None:
    """One READY per order (exactly one, or at least one where a broker failure may force a re-send - the copies
    then carry the same eventId), in the seed's shape, agreeing with the stored row and the facade."""
    wait_until(lambda: pipe.broker.ready_count(COLLECTOR_QUEUE) >= len(events), timeout=60, what="READY events")
    ready = pipe.ready_events()
    if exactly_once:
        assert len(ready) == len(events)
    else:
        by_id = {r["eventId"]: r for r in ready}
        assert all(by_id[r["eventId"]] == r for r in ready)  # a re-sent READY is the same event
        ready = list(by_id.values())
    version = pipe.facade.active_version()
    assert {r["orderId"] for r in ready} == {order_id for order_id, _, _ in events}
    assert len({r["eventId"] for r in ready}) == len(events)
    stored = {
        str(order_id): (model_version, float(sla), eta)
        for order_id, model_version, sla, eta in pipe.query(
            "SELECT order_id, model_version, sla_risk, eta_minutes FROM orders_prediction"
        )
    }
    for event in ready:
        assert list(event) == ["eventId", "type", "occurredAt", "orderId", "actorId", "data"]
        assert event["type"] == "ML_PREDICTION_READY"
        assert event["actorId"] == "system"
        assert list(event["data"]) == ["modelVersion", "slaRisk", "etaMinutes"]
        assert event["data"]["modelVersion"] == version
        assert stored[event["orderId"]] == (version, event["data"]["slaRisk"], event["data"]["etaMinutes"])
    # the stored prediction is the facade's answer for those features
    sample = [(order_id, features) for order_id, _, features in events[:: max(1, len(events) // 20)]]
    for (order_id, _), answer in zip(sample, pipe.facade.predict_batch(sample), strict=True):
        predictions = answer["predictions"]
        assert stored[order_id] == (answer["modelVersion"], predictions["slaRisk"], predictions["etaMinutes"])
