"""The event path end to end against real processes: `osml serve` (a real trained pair in an embedded tracking
store), `osml worker` and `osml relay`, on a fresh RabbitMQ vhost and a fresh PostgreSQL database per test.

The tests publish REQUESTED events as the backend would, and read the READY events from their own queue bound
to the exchange; everything is awaited by polling with deadlines.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import httpx
import orjson
import psycopg
import pytest
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from tests.conftest_training import FAST_CANDIDATES
from tests.services import PG_ADMIN_URL, rabbitmqctl
from tests.support import VENV_BIN, free_port, start_process, stop_process, wait_until
from training.pipeline import train
from worker.simulator import generate_orders
from worker.topology import DEAD_LETTER_QUEUE, DETAIL_HEADER, READY_KEY, REASON_HEADER, REQUESTED_KEY, REQUESTED_QUEUE
from worker.topology import declare as declare_topology

pytestmark = pytest.mark.integration

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

    def predict_batch(self, items: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """The facade's answers through /predict/batch, the endpoint the worker uses."""
        response = httpx.post(
            f"{self.url}/predict/batch",
            json={"items": [{"requestId": "check", "orderId": o, "features": f} for o, f in items]},
            headers={"X-API-Key": PREDICT_KEY},
            timeout=30,
        )
        response.raise_for_status()
        return list(response.json()["items"])


@pytest.fixture(scope="module")
def facade(tmp_path_factory: pytest.TempPathFactory, synthetic_csv: Path) -> Iterator[Facade]:
    """One facade for the module, serving a pair trained on synthetic data in an embedded tracking store."""
    workdir = tmp_path_factory.mktemp("worker-facade")
    tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
    train(dataset_ref=str(synthetic_csv), tracking_uri=tracking_uri, activate=True, candidates=FAST_CANDIDATES)
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

    def __init__(self, url: str) -> None:
        self.url = url
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._connection: AbstractRobustConnection = self.run(aio_pika.connect_robust(url))
        self._channel: AbstractChannel = self.run(self._open_channel())

    async def _open_channel(self) -> AbstractChannel:
        channel = await self._connection.channel(publisher_confirms=True)
        topology = await declare_topology(channel)
        collector = await channel.declare_queue(COLLECTOR_QUEUE, durable=True)
        await collector.bind(topology.exchange, routing_key=READY_KEY)
        return channel

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

    @property
    def vhost(self) -> str:
        return self.amqp_url.rsplit("/", 1)[1]

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "OSML_BROKER_URL": self.amqp_url,
            "OSML_DATABASE_URL": self.database_url,
            "OSML_FACADE_URL": self.facade.url,
            "OSML_PREDICT_API_KEY": PREDICT_KEY,
            # quick recovery once a dependency is back
            "OSML_RETRY_MAX_S": "0.5",
            "OSML_BREAKER_RESET_S": "0.5",
            **extra,
        }

    def start(self, command: str, **extra: str) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{command}-{len(self.procs)}.log"
        proc = start_process([str(VENV_BIN / "osml"), command], log=log, env=self.env(**extra))
        self.procs.append(proc)
        return proc

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

    def wait_settled(self, expected_rows: int) -> None:
        """Every message consumed and acked, every prediction stored and every outbox row sent."""
        self.wait_rows(expected_rows)
        wait_until(
            lambda: queue_depth(self.vhost, REQUESTED_QUEUE) == 0,
            timeout=DEADLINE_S,
            what="the REQUESTED queue drained and acked",
        )
        wait_until(
            lambda: self.scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0,
            timeout=DEADLINE_S,
            what="outbox fully relayed",
        )

    def ready_events(self) -> list[dict[str, Any]]:
        messages = self.broker.drain(COLLECTOR_QUEUE)
        return [orjson.loads(m.body) for m in messages]

    def stop_all(self) -> None:
        for proc in self.procs:
            stop_process(proc)


@pytest.fixture
def pipeline(amqp_url: str, pg_database: str, facade: Facade, tmp_path: Path) -> Iterator[Pipeline]:
    broker = Broker(amqp_url)
    pipe = Pipeline(amqp_url=amqp_url, database_url=pg_database, facade=facade, workdir=tmp_path, broker=broker)
    try:
        yield pipe
    finally:
        pipe.stop_all()
        broker.close()


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


# ---------------------------------------------------------------- tests


def test_thousand_events_make_thousand_rows_and_thousand_ready_events(pipeline: Pipeline) -> None:
    pipeline.start_worker()
    # two relays side by side: SKIP LOCKED keeps them from sending a row twice
    pipeline.start_relay()
    pipeline.start_relay()
    events = requested_events(1000, seed=1)
    pipeline.broker.publish([body for _, body, _ in events])

    pipeline.wait_settled(1000)
    check_ready_events(pipeline, events)
    assert pipeline.scalar("SELECT count(DISTINCT order_id) FROM orders_prediction") == 1000
    snapshot = pipeline.scalar(f"SELECT features_snapshot FROM orders_prediction WHERE order_id = '{events[0][0]}'")
    assert snapshot == events[0][2]
    assert pipeline.broker.ready_count(DEAD_LETTER_QUEUE) == 0


def test_every_event_delivered_twice_still_makes_one_row_and_one_ready_each(pipeline: Pipeline) -> None:
    pipeline.start_worker()
    pipeline.start_relay()
    events = requested_events(1000, seed=2)
    bodies = [body for _, body, _ in events]
    # copies side by side (the same batch) and a whole second pass (already stored)
    pipeline.broker.publish([b for body in bodies[:500] for b in (body, body)] + bodies[500:])
    pipeline.broker.publish(bodies)

    pipeline.wait_settled(1000)
    assert pipeline.scalar("SELECT count(*) FROM outbox") == 1000
    check_ready_events(pipeline, events)
    assert pipeline.broker.ready_count(DEAD_LETTER_QUEUE) == 0


def test_worker_killed_mid_stream_loses_and_duplicates_nothing(pipeline: Pipeline) -> None:
    # small batches so that the stream is long enough to be cut in the middle
    small = {"OSML_WORKER_BATCH_SIZE": "20", "OSML_WORKER_PREFETCH": "40"}
    worker = pipeline.start_worker(**small)
    pipeline.start_relay()
    events = requested_events(1000, seed=3)
    pipeline.broker.publish([body for _, body, _ in events])

    wait_until(lambda: pipeline.rows() >= 100, timeout=DEADLINE_S, what="the stream under way")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    cut_at = pipeline.rows()
    assert cut_at < 1000, "the worker finished before it was killed: the test did not cut the stream"
    # its unacked messages are back (and perhaps some stored whose ack it never sent)
    assert queue_depth(pipeline.vhost, REQUESTED_QUEUE) >= 1000 - cut_at

    pipeline.start_worker(**small)
    pipeline.wait_settled(1000)
    assert pipeline.scalar("SELECT count(*) FROM outbox") == 1000
    check_ready_events(pipeline, events)


def test_facade_down_for_ten_seconds_holds_events_until_it_returns(pipeline: Pipeline) -> None:
    worker = pipeline.start_worker()
    pipeline.start_relay()
    events = requested_events(1000, seed=4)
    pipeline.broker.publish([body for _, body, _ in events[:300]])
    pipeline.wait_rows(300)

    pipeline.facade.stop()
    try:
        pipeline.broker.publish([body for _, body, _ in events[300:]])
        wait_until(
            lambda: "transient failure" in (pipeline.workdir / "worker-0.log").read_text(),
            timeout=30,
            what="the worker meeting the facade down",
        )
        asyncio.run(asyncio.sleep(10))  # the outage itself, not a synchronisation
        assert pipeline.rows() == 300
        assert worker.poll() is None
        assert pipeline.broker.ready_count(DEAD_LETTER_QUEUE) == 0
        assert queue_depth(pipeline.vhost, REQUESTED_QUEUE) == 700  # held (unacked or waiting), not dropped
    finally:
        pipeline.facade.start()

    pipeline.wait_settled(1000)
    check_ready_events(pipeline, events)
    assert pipeline.broker.ready_count(DEAD_LETTER_QUEUE) == 0
    log = (pipeline.workdir / "worker-0.log").read_text()
    assert "circuit breaker opened" in log


def test_database_unreachable_for_a_while_holds_events_until_it_returns(pipeline: Pipeline) -> None:
    worker = pipeline.start_worker()
    pipeline.start_relay()
    events = requested_events(600, seed=7)
    pipeline.broker.publish([body for _, body, _ in events[:200]])
    pipeline.wait_rows(200)

    name = pipeline.database_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        # this database only: refuse new connections (superusers included) and cut the open ones
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        try:
            pipeline.broker.publish([body for _, body, _ in events[200:]])
            wait_until(
                lambda: "store predictions" in (pipeline.workdir / "worker-0.log").read_text(),
                timeout=60,
                what="the worker meeting the database down",
            )
            assert worker.poll() is None
            assert pipeline.broker.ready_count(DEAD_LETTER_QUEUE) == 0
            assert queue_depth(pipeline.vhost, REQUESTED_QUEUE) == 400  # held, not acked, not dropped
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

    pipeline.wait_settled(600)
    # a relay cut between the broker's confirm and its commit re-sends that claim: at-least-once, same eventIds
    check_ready_events(pipeline, events, exactly_once=False)
    assert pipeline.broker.ready_count(DEAD_LETTER_QUEUE) == 0


def test_broker_connections_dropped_mid_stream_lose_nothing(pipeline: Pipeline) -> None:
    small = {"OSML_WORKER_BATCH_SIZE": "20", "OSML_WORKER_PREFETCH": "40", "OSML_RELAY_BATCH_SIZE": "50"}
    pipeline.start_worker(**small)
    pipeline.start_relay(**small)
    events = requested_events(1000, seed=6)
    pipeline.broker.publish([body for _, body, _ in events[:500]])

    wait_until(lambda: pipeline.rows() >= 100, timeout=DEADLINE_S, what="the stream under way")
    # as in a broker restart: every connection of the vhost (worker, relay, this test's) is cut
    rabbitmqctl("close_all_connections", "-p", pipeline.vhost, "test: connections dropped")
    logs = lambda: "".join(p.read_text() for p in pipeline.workdir.glob("*.log"))  # noqa: E731
    wait_until(lambda: logs().count("broker connection lost, reconnecting") >= 1, timeout=60, what="a reconnection")
    # the rest of the stream after the cut (this test's own connection reconnects too)
    wait_until(
        lambda: pipeline.broker.publish([body for _, body, _ in events[500:]]) is None,
        timeout=60,
        what="publishing after the cut",
    )

    pipeline.wait_settled(1000)
    check_ready_events(pipeline, events, exactly_once=False)
    assert pipeline.broker.ready_count(DEAD_LETTER_QUEUE) == 0


def _bad_events() -> list[tuple[bytes, str, str]]:
    """(body, expected reason, a word the detail must contain)."""
    base = orjson.loads(requested_events(1, seed=99)[0][1])

    def variant(**changes: Any) -> dict[str, Any]:
        return {**base, "eventId": str(uuid.uuid4()), "orderId": str(uuid.uuid4()), **changes}

    def with_features(**changes: Any) -> dict[str, Any]:
        return variant(data={"features": {**base["data"]["features"], **changes}})

    without_priority = variant(
        data={"features": {k: v for k, v in base["data"]["features"].items() if k != "priority"}}
    )
    return [
        (b'{"eventId": "broken', "invalid_json", ""),
        (b"[]", "invalid_event", "object"),
        (orjson.dumps(variant(type="ORDER_CREATED")), "wrong_type", "ORDER_CREATED"),
        (orjson.dumps({k: v for k, v in variant().items() if k != "orderId"}), "invalid_event", "orderId"),
        (orjson.dumps(variant(eventId="not-a-uuid")), "invalid_event", "eventId"),
        (orjson.dumps(variant(data={"features": "HIGH"})), "invalid_event", "features"),
        (orjson.dumps(with_features(createdHour=99)), "invalid_features", "createdHour"),
        (orjson.dumps(with_features(priority="URGENT")), "invalid_features", "priority"),
        (orjson.dumps(with_features(favouriteColour="blue")), "invalid_features", "favouriteColour"),
        (orjson.dumps(without_priority), "invalid_features", "priority"),
    ]


def test_malformed_and_invalid_events_are_dead_lettered_while_the_stream_flows(pipeline: Pipeline) -> None:
    pipeline.start_worker()
    pipeline.start_relay()
    good = requested_events(400, seed=5)
    bad = _bad_events()
    # bad events scattered through the stream, and good ones after the last bad one
    stream: list[bytes] = []
    for index, (_, body, _) in enumerate(good):
        stream.append(body)
        if index % 30 == 0 and index // 30 < len(bad):
            stream.append(bad[index // 30][0])
    pipeline.broker.publish(stream)

    pipeline.wait_settled(400)
    check_ready_events(pipeline, good)
    letters = pipeline.broker.drain(DEAD_LETTER_QUEUE)
    assert len(letters) == len(bad)
    by_body = {m.body: m for m in letters}
    for body, reason, word in bad:
        headers = by_body[body].headers
        assert headers[REASON_HEADER] == reason, body
        assert word in str(headers[DETAIL_HEADER]), (body, headers[DETAIL_HEADER])
