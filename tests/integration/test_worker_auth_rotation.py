"""The facade's predict key rotated under a running worker (docs/worker.md, "A refused API key stops the worker").

The worker streams through its own `osml serve`; mid-stream the operator restarts that facade with a new key
only. The worker waits through the restart (a transient outage), then meets 403 and must stop at once with a
CRITICAL line naming OSML_PREDICT_API_KEY and exit status 3, leaving what it held unacked. A worker started with
the new key then settles every event: one row, one outbox row and one READY each, nothing dead-lettered.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.conftest_worker import (
    Facade,
    check_ready_events,
    open_pipeline,
    queue_depth,
    requested_events,
)
from tests.support import wait_until
from worker.consumer import EXIT_AUTH_REJECTED
from worker.topology import DEAD_LETTER_QUEUE, REQUESTED_QUEUE

pytestmark = pytest.mark.integration

ROTATED_KEY = "worker-test-rotated-predict-key"
EVENTS = 600
# small batches, so the stream is still flowing when the key changes
SMALL = {"OSML_WORKER_BATCH_SIZE": "20", "OSML_WORKER_PREFETCH": "40"}
# from the facade answering with the new key to the worker's exit: its retry ceiling and breaker reset
# (conftest_worker: 0.5 s each) and a process exit, with room for a busy machine
FAIL_FAST_S = 10.0


@pytest.fixture
def own_facade(facade: Facade, tmp_path: Path) -> Iterator[Facade]:
    """A facade of this test's own (the session's serves other tests), on the session's tracking store."""
    server = Facade(
        env={**facade.env, "OSML_DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.db'}", "OSML_DRAIN_SECONDS": "0"},
        log=tmp_path / "facade.log",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def worker_log(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_a_key_rotated_mid_stream_stops_the_worker_and_the_next_one_settles_every_event(
    amqp_url: str, pg_database: str, own_facade: Facade, tmp_path: Path
) -> None:
    with open_pipeline(amqp_url, pg_database, own_facade, tmp_path) as pipe:
        worker = pipe.start_worker(**SMALL)
        pipe.start_relay()
        events = requested_events(EVENTS, seed=31)
        half = EVENTS // 2
        pipe.broker.publish([body for _, body, _ in events[:half]])
        wait_until(lambda: pipe.rows() >= 100, timeout=60, what="the stream under way")

        own_facade.stop()
        # the rest arrives while the facade is down: on a quiet machine the first half can be stored before the
        # restart, and the worker must still have events in hand when the key changes
        pipe.broker.publish([body for _, body, _ in events[half:]])
        own_facade.env["OSML_PREDICT_API_KEY"] = ROTATED_KEY  # the old key is dropped, not kept beside the new one
        own_facade.start()
        rotated = time.monotonic()
        wait_until(lambda: worker.poll() is not None, timeout=FAIL_FAST_S, what="the worker giving up on its key")
        print(f"worker exited {time.monotonic() - rotated:.2f}s after the facade came back with the new key")

        assert worker.returncode == EXIT_AUTH_REJECTED
        lines = worker_log(pipe.workdir / "worker-0.log")
        [critical] = [line for line in lines if line["level"] == "CRITICAL"]
        assert "OSML_PREDICT_API_KEY" in str(critical["msg"]) and "403" in str(critical["error"])
        # the restart itself was an outage, waited out, not a reason to stop
        assert any(line["msg"] == "transient failure, retrying" for line in lines[: lines.index(critical)])
        cut_at = pipe.rows()
        assert cut_at < EVENTS, "the stream ended before the key changed: the test did not cut it"
        # nothing lost: every event not stored is back in the queue for the next worker (polled: a quorum queue's
        # counts in `rabbitmqctl list_queues` lag by a few seconds)
        wait_until(
            lambda: queue_depth(pipe.vhost, REQUESTED_QUEUE) == EVENTS - cut_at,
            timeout=30,
            what=f"{EVENTS - cut_at} events back in the queue",
        )
        assert pipe.broker.ready_count(DEAD_LETTER_QUEUE) == 0

        pipe.start_worker(**SMALL, OSML_PREDICT_API_KEY=ROTATED_KEY)
        pipe.wait_settled(EVENTS, timeout=60)
        assert pipe.scalar("SELECT count(*) FROM outbox") == EVENTS
        check_ready_events(pipe, events)
        assert pipe.broker.ready_count(DEAD_LETTER_QUEUE) == 0
