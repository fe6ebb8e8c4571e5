"""The event path end to end against real processes: `osml serve` (a real trained pair in an embedded tracking
store), `osml worker` and `osml relay`, on a fresh RabbitMQ vhost and a fresh PostgreSQL database per test
(the harness is tests/conftest_worker.py; broker and database outages are in test_worker_chaos.py).

The tests publish REQUESTED events as the backend would, and read the READY events from their own queue bound
to the exchange; everything is awaited by polling with deadlines.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from typing import Any

import orjson
import pytest

from tests.conftest_worker import (
    DEADLINE_S,
    Pipeline,
    check_ready_events,
    queue_depth,
    requested_events,
)
from tests.support import wait_until
from worker.topology import DEAD_LETTER_QUEUE, DETAIL_HEADER, REASON_HEADER, REQUESTED_QUEUE

pytestmark = pytest.mark.integration


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
    # OSML_WORKER_EXPLAIN is off by default: nothing asked, nothing stored
    assert pipeline.scalar("SELECT count(*) FROM orders_prediction WHERE explanations IS NOT NULL") == 0
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


# small batches so that the stream is long enough to be cut in the middle
SMALL_BATCHES = {"OSML_WORKER_BATCH_SIZE": "20", "OSML_WORKER_PREFETCH": "40"}


def _cut_mid_stream(
    pipeline: Pipeline, sig: signal.Signals, *, seed: int
) -> tuple[int, list[tuple[str, bytes, dict[str, Any]]], int]:
    """Stream 1,000 events and send `sig` to the worker once 100 are stored: its exit status, the events, and the
    rows stored when it was gone."""
    worker = pipeline.start_worker(**SMALL_BATCHES)
    pipeline.start_relay()
    events = requested_events(1000, seed=seed)
    pipeline.broker.publish([body for _, body, _ in events])

    wait_until(lambda: pipeline.rows() >= 100, timeout=DEADLINE_S, what="the stream under way")
    os.killpg(worker.pid, sig)
    worker.wait(timeout=10)  # a stop finishes the batch in hand and leaves: seconds, not a drain of the queue
    cut_at = pipeline.rows()
    assert cut_at < 1000, "the worker finished before the signal: the test did not cut the stream"
    return worker.returncode, events, cut_at


def _settled_by_a_new_worker(pipeline: Pipeline, events: list[tuple[str, bytes, dict[str, Any]]]) -> None:
    pipeline.start_worker(**SMALL_BATCHES)
    pipeline.wait_settled(1000)
    assert pipeline.scalar("SELECT count(*) FROM outbox") == 1000
    check_ready_events(pipeline, events)
    assert pipeline.broker.ready_count(DEAD_LETTER_QUEUE) == 0


def test_worker_killed_mid_stream_loses_and_duplicates_nothing(pipeline: Pipeline) -> None:
    _, events, cut_at = _cut_mid_stream(pipeline, signal.SIGKILL, seed=3)
    # its unacked messages are back (and perhaps some stored whose ack it never sent)
    # (polled: a quorum queue's counts in `rabbitmqctl list_queues` lag by a few seconds)
    wait_until(
        lambda: queue_depth(pipeline.vhost, REQUESTED_QUEUE) >= 1000 - cut_at,
        timeout=30,
        what="the killed worker's messages back in the queue",
    )
    _settled_by_a_new_worker(pipeline, events)


def test_worker_stopped_by_sigterm_mid_stream_settles_its_batch_and_loses_nothing(pipeline: Pipeline) -> None:
    status, events, cut_at = _cut_mid_stream(pipeline, signal.SIGTERM, seed=5)
    assert status == 0
    assert "worker stopped" in (pipeline.workdir / "worker-0.log").read_text()
    # unlike a kill, a stop acks every prediction it stored: exactly the rest is back in the queue
    wait_until(
        lambda: queue_depth(pipeline.vhost, REQUESTED_QUEUE) == 1000 - cut_at,
        timeout=30,
        what=f"{1000 - cut_at} messages back in the queue",
    )
    _settled_by_a_new_worker(pipeline, events)


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
        # visible on /metrics: the breaker open (or probing) and the retries counted
        during = pipeline.metrics(worker)
        breaker = {
            state: during[("osml_worker_facade_breaker", (("osml_worker_facade_breaker", state),))]
            for state in ("closed", "open", "half_open")
        }
        assert breaker["closed"] == 0 and breaker["open"] + breaker["half_open"] == 1
        assert during[("osml_retries_total", (("what", "/predict/batch"),))] > 0
        assert pipeline.broker.ready_count(DEAD_LETTER_QUEUE) == 0
        assert queue_depth(pipeline.vhost, REQUESTED_QUEUE) == 700  # held (unacked or waiting), not dropped
    finally:
        pipeline.facade.start()

    pipeline.wait_settled(1000)
    check_ready_events(pipeline, events)
    assert pipeline.broker.ready_count(DEAD_LETTER_QUEUE) == 0
    log = (pipeline.workdir / "worker-0.log").read_text()
    assert "circuit breaker opened" in log


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
        # valid JSON and a valid string, but PostgreSQL's jsonb cannot hold it: the facade refuses it up front
        (orjson.dumps(with_features(category="T\u0000I")), "invalid_features", "category"),
        (orjson.dumps(with_features(location="north\u0000")), "invalid_features", "location"),
    ]


def test_malformed_and_invalid_events_are_dead_lettered_while_the_stream_flows(pipeline: Pipeline) -> None:
    worker = pipeline.start_worker()
    relay = pipeline.start_relay()
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

    # what the operator sees on /metrics
    counts = pipeline.metrics(worker)
    assert counts[("osml_worker_events_consumed_total", ())] == len(stream)
    reasons = {reason: sum(1 for _, r, _ in bad if r == reason) for _, reason, _ in bad}
    for reason, count in reasons.items():
        assert counts[("osml_worker_dead_lettered_total", (("reason", reason),))] == count
    assert counts[("osml_worker_facade_breaker", (("osml_worker_facade_breaker", "closed"),))] == 1
    assert pipeline.metrics(relay)[("osml_relay_ready_published_total", ())] == len(good)
    wait_until(
        lambda: pipeline.metrics(relay)[("osml_relay_outbox_backlog", ())] == 0, timeout=30, what="backlog gauge 0"
    )


def test_ready_events_no_queue_takes_stay_in_the_outbox_until_one_is_bound(
    pipeline_without_ready_queue: Pipeline,
) -> None:
    pipe = pipeline_without_ready_queue
    pipe.start_worker()
    relay = pipe.start_relay()
    events = requested_events(50, seed=8)
    pipe.broker.publish([body for _, body, _ in events])
    pipe.wait_rows(50)

    # confirmed by the broker but routed nowhere: without `mandatory` the relay marked them sent, and they were gone
    def unroutable() -> float:
        return pipe.metrics(relay).get(("osml_relay_ready_unroutable_total", ()), 0.0)

    wait_until(lambda: unroutable() >= 100, timeout=60, what="READY returned twice over")
    assert pipe.scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 50
    wait_until(lambda: pipe.metrics(relay)[("osml_relay_outbox_backlog", ())] == 50, timeout=30, what="backlog 50")
    samples = pipe.metrics(relay)
    assert samples[("osml_relay_outbox_oldest_unsent_age_seconds", ())] > 0
    assert samples.get(("osml_relay_ready_published_total", ()), 0.0) == 0
    assert "READY returned by the broker" in (pipe.workdir / "relay-1.log").read_text()

    pipe.broker.collect_ready()
    pipe.wait_settled(50)
    check_ready_events(pipe, events)
