"""Chaos: RabbitMQ and PostgreSQL go away mid-stream, as in a restart, and come back.

The worker and the relay reach the service through a TCP proxy on loopback that the test controls (the machine's
RabbitMQ and PostgreSQL are shared with other test runs, so they are never restarted here): the proxy resets every
connection and refuses new ones for OUTAGE_S, then accepts again. The processes run with their default retry
settings. Pass: every event sent has one row and one READY (a READY re-sent across the fault carries the same
eventId), the DLQ is empty, and everything is settled within RECOVERY_S of the fault ending.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.conftest_worker import Pipeline, check_ready_events, requested_events
from tests.integration.tcp_proxy import TcpProxy
from tests.services import AMQP_HOST, PG_ADMIN_URL
from tests.support import wait_until
from worker.topology import DEAD_LETTER_QUEUE

pytestmark = pytest.mark.integration

OUTAGE_S = 5.0
RECOVERY_S = 30.0
EVENTS = 800
# production defaults (worker/settings.py), not the harness's quick ones: recovery is what a deployment gets
DEFAULT_RETRIES = {"OSML_RETRY_MAX_S": "5", "OSML_BREAKER_RESET_S": "2"}
# small batches, so the stream is still flowing when the fault comes
SMALL = {"OSML_WORKER_BATCH_SIZE": "20", "OSML_WORKER_PREFETCH": "40", "OSML_RELAY_BATCH_SIZE": "50"}


def _through(url: str, proxy: TcpProxy) -> str:
    netloc = urlsplit(url).netloc
    host_port = netloc.rpartition("@")[2]
    return url.replace(host_port, f"127.0.0.1:{proxy.port}", 1)


@pytest.fixture(params=["rabbitmq", "postgresql"])
def faulty(request: pytest.FixtureRequest, pipeline: Pipeline) -> Iterator[tuple[Pipeline, TcpProxy]]:
    """The pipeline with one of its services behind a proxy."""
    if request.param == "rabbitmq":
        host, _, port = AMQP_HOST.rpartition(":")
        proxy = TcpProxy(host, int(port))
        pipeline.service_amqp_url = _through(pipeline.amqp_url, proxy)
    else:
        target = urlsplit(PG_ADMIN_URL)
        proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
        pipeline.service_database_url = _through(pipeline.database_url, proxy)
    try:
        yield pipeline, proxy
    finally:
        proxy.close()


def test_a_service_restarting_mid_stream_loses_and_duplicates_nothing(faulty: tuple[Pipeline, TcpProxy]) -> None:
    pipe, proxy = faulty
    pipe.start_worker(**SMALL, **DEFAULT_RETRIES)
    pipe.start_relay(**SMALL, **DEFAULT_RETRIES)
    events = requested_events(EVENTS, seed=21)
    bodies = [body for _, body, _ in events]
    pipe.broker.publish(bodies[: EVENTS // 2])

    wait_until(lambda: pipe.rows() >= 100, timeout=60, what="the stream under way")
    proxy.cut()
    cut_at = pipe.rows()
    # the backend keeps publishing during the outage (its own connection does not cross the proxy)
    pipe.broker.publish(bodies[EVENTS // 2 :])
    time.sleep(OUTAGE_S)  # the outage itself, not a synchronisation
    assert pipe.rows() < EVENTS, "the stream ended before the fault: the test did not cut it"
    assert all(proc.poll() is None for proc in pipe.procs), "a process died of the outage"
    proxy.restore()
    restored = time.monotonic()

    pipe.wait_settled(EVENTS, timeout=RECOVERY_S)
    recovery_s = time.monotonic() - restored
    check_ready_events(pipe, events, exactly_once=False)
    assert pipe.broker.ready_count(DEAD_LETTER_QUEUE) == 0
    print(f"cut at {cut_at} rows; settled {recovery_s:.1f}s after the fault ended")
