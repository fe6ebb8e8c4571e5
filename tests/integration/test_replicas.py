"""Replicas that agree: two facades, two workers and two relays on one broker vhost, one PostgreSQL database and
one tracking server, as a scaled-out deployment runs them (docs/scale.md).

A promotion in the registry is served by both facades within the poll interval (plus loading the pair), and a
stream of events split between the two workers ends as exactly one row and one READY event per event.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from osml import registry
from tests.conftest_worker import (
    PREDICT_KEY,
    Broker,
    Facade,
    Pipeline,
    check_ready_events,
    queue_column,
    requested_events,
)
from tests.integration.test_serving_swap import pair_a_and_b, registry_client  # noqa: F401 (a fixture)
from tests.services import MlflowServer
from tests.support import wait_until
from worker.topology import DEAD_LETTER_QUEUE, REQUESTED_QUEUE

pytestmark = pytest.mark.integration

POLL_SECONDS = 1.0
EVENTS = 5000
# "a real share": RabbitMQ hands messages round-robin to consumers with prefetch room, so two equal workers
# split a stream about evenly; a fifth is far below that and far above a worker that barely joined
MIN_SHARE = 0.2


@pytest.fixture
def facades(
    tmp_path: Path,
    pg_database: str,
    mlflow_tracking_server: MlflowServer,
    pair_a_and_b: tuple[str, str],  # noqa: F811 (both pairs registered before the facades start)
) -> Iterator[list[Facade]]:
    env = {
        "MLFLOW_TRACKING_URI": mlflow_tracking_server.url,
        "OSML_PREDICT_API_KEY": PREDICT_KEY,
        "OSML_ADMIN_API_KEY": "replica-test-admin-key",
        "OSML_DATABASE_URL": pg_database,
        "OSML_MODEL_POLL_SECONDS": str(POLL_SECONDS),
    }
    started: list[Facade] = []
    try:
        for n in range(2):
            facade = Facade(env=env, log=tmp_path / f"facade-{n}.log")
            facade.start()
            started.append(facade)
        yield started
    finally:
        for facade in started:
            facade.stop()


def stored_by(log: Path) -> int:
    """Predictions a worker stored, from its `predictions stored` log lines."""
    total = 0
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            record = orjson.loads(line)
            if record.get("msg") == "predictions stored":
                total += int(record["count"])
    return total


def test_two_of_each_serve_one_promotion_and_split_the_events_exactly(
    facades: list[Facade],
    mlflow_tracking_server: MlflowServer,
    pair_a_and_b: tuple[str, str],  # noqa: F811
    amqp_url: str,
    pg_database: str,
    tmp_path: Path,
) -> None:
    client = registry_client(mlflow_tracking_server)
    production = registry.production_pair(client)
    assert production is not None
    current = production.model_version
    promoted = next(v for v in pair_a_and_b if v != current)
    for facade in facades:
        wait_until(lambda f=facade: f.active_version() == current, timeout=60, what="both facades on one pair")

    registry.activate(client, promoted)
    at = time.monotonic()
    served_after: list[float] = []
    for facade in facades:
        wait_until(lambda f=facade: f.active_version() == promoted, timeout=60, what="the promotion served")
        served_after.append(time.monotonic() - at)
    # one poll interval, plus downloading and loading the pair from the tracking server (as in test_serving_swap)
    assert max(served_after) < POLL_SECONDS + 30, served_after

    broker = Broker(amqp_url)
    pipeline = Pipeline(amqp_url=amqp_url, database_url=pg_database, facade=facades[0], workdir=tmp_path, broker=broker)
    try:
        # each worker asks its own facade, as each replica would ask the one its load balancer picks
        pipeline.start_worker()
        pipeline.start_worker(OSML_FACADE_URL=facades[1].url)
        wait_until(
            lambda: queue_column(pipeline.vhost, REQUESTED_QUEUE, "consumers") == 2,
            timeout=60,
            what="both workers consuming",
        )
        pipeline.start_relay()
        pipeline.start_relay()
        events = requested_events(EVENTS, seed=14)
        pipeline.broker.publish([body for _, body, _ in events])

        pipeline.wait_settled(EVENTS)
        check_ready_events(pipeline, events)  # exactly one READY per event, each naming the promoted pair
        assert pipeline.facade.active_version() == promoted
        assert pipeline.scalar("SELECT count(DISTINCT model_version) FROM orders_prediction") == 1
        assert pipeline.broker.ready_count(DEAD_LETTER_QUEUE) == 0
        shares = [stored_by(tmp_path / f"worker-{n}.log") for n in (0, 1)]
        assert sum(shares) == EVENTS
        assert min(shares) >= MIN_SHARE * EVENTS, shares
    finally:
        pipeline.stop_all()
        broker.close()
