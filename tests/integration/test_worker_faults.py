"""What the worker does with failures no retry can mend: a facade answer that is not a prediction, rows the database
refuses, an API key the facade refuses. Each is bounded and visible; none stalls the queue or loops."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from tests.conftest_worker import PREDICT_KEY, Facade, Pipeline, check_ready_events, queue_depth, requested_events
from tests.support import wait_until
from worker.consumer import EXIT_AUTH_REJECTED
from worker.facade_client import FacadeClient
from worker.migrate import upgrade
from worker.processing import MALFORMED_ATTEMPTS, BatchProcessor, DeadLetter, Stored
from worker.resilience import Backoff, CircuitBreaker
from worker.store import PredictionStore
from worker.topology import DEAD_LETTER_QUEUE, DETAIL_HEADER, REASON_HEADER, REQUESTED_QUEUE

pytestmark = pytest.mark.integration


class SpoilingTransport(httpx.AsyncBaseTransport):
    """The real facade's answers, with the one for `order_id` replaced by a body that is not a prediction (as a
    buggy facade or a proxy in between might send), counting how often that order was asked for."""

    def __init__(self, order_id: str) -> None:
        self._real = httpx.AsyncHTTPTransport()
        self._order_id = order_id
        self.asked = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.asked += self._order_id.encode() in request.content
        response = await self._real.handle_async_request(request)
        body = orjson.loads(await response.aread())
        if response.status_code == 200:
            if "items" in body:
                body["items"] = [self._spoil(item) for item in body["items"]]
            else:
                body = self._spoil(body)
        return httpx.Response(response.status_code, content=orjson.dumps(body))

    def _spoil(self, answer: dict[str, Any]) -> dict[str, Any]:
        return {**answer, "predictions": "not computed"} if answer.get("orderId") == self._order_id else answer

    async def aclose(self) -> None:
        await self._real.aclose()


async def test_an_answer_malformed_for_one_item_dead_letters_that_item_after_a_few_tries(
    facade: Facade, pg_database: str
) -> None:
    upgrade(pg_database)
    events = requested_events(20, seed=11)
    spoiled = events[7][0]
    transport = SpoilingTransport(spoiled)
    client = FacadeClient(
        base_url=facade.url,
        api_key=PREDICT_KEY,
        timeout_s=5,
        breaker=CircuitBreaker(failure_threshold=5, reset_s=0.5),
        transport=transport,
    )
    store = PredictionStore(pg_database)
    processor = BatchProcessor(facade=client, store=store, backoff=Backoff(initial=0.01, maximum=0.05))
    try:
        # before: the malformed answer was a transient failure, and the whole batch was retried forever
        outcomes = await asyncio.wait_for(processor.process([body for _, body, _ in events]), timeout=60)
    finally:
        await client.aclose()
        await store.close()

    letters = [o for o in outcomes if isinstance(o, DeadLetter)]
    assert [(letter.order_id, letter.reason) for letter in letters] == [(spoiled, "malformed_answer")]
    assert "not computed" in letters[0].detail
    assert sum(isinstance(o, Stored) and o.new for o in outcomes) == 19
    # once in the batch, then alone a bounded number of times
    assert transport.asked == 1 + MALFORMED_ATTEMPTS
    with psycopg.connect(pg_database) as conn:
        assert conn.execute("SELECT count(*) FROM orders_prediction").fetchone() == (19,)


def test_rows_the_database_refuses_are_dead_lettered_while_the_others_are_stored(pipeline: Pipeline) -> None:
    worker = pipeline.start_worker()
    pipeline.start_relay()
    events = requested_events(200, seed=12)
    refused = {events[13][0], events[150][0]}
    listed = ", ".join(f"'{order}'" for order in sorted(refused))
    with psycopg.connect(pipeline.database_url, autocommit=True) as conn:
        # a real non-transient error from PostgreSQL, raised for these orders only
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'order % refused by policy', NEW.order_id; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON orders_prediction FOR EACH ROW "
            f"WHEN (NEW.order_id IN ({listed})) EXECUTE FUNCTION refuse()"
        )
    pipeline.broker.publish([body for _, body, _ in events])

    # before: the error stopped the worker, which met the same batch again at every start
    pipeline.wait_settled(198)
    check_ready_events(pipeline, [e for e in events if e[0] not in refused])
    letters = pipeline.broker.drain(DEAD_LETTER_QUEUE)
    assert {orjson.loads(m.body)["orderId"] for m in letters} == refused
    for message in letters:
        assert message.headers[REASON_HEADER] == "database_rejected"
        assert "P0001" in str(message.headers[DETAIL_HEADER])
        assert "refused by policy" in str(message.headers[DETAIL_HEADER])
    assert worker.poll() is None


@pytest.mark.parametrize(
    ("key", "status"),
    [("not-the-predict-key", "403"), ("", "401")],  # a wrong key, and none at all (the header is left out)
    ids=["wrong-key", "no-key"],
)
def test_a_refused_api_key_stops_the_worker_at_once_with_a_clear_log_and_exit_status(
    pipeline: Pipeline, key: str, status: str
) -> None:
    events = requested_events(20, seed=13)
    pipeline.broker.publish([body for _, body, _ in events])
    worker = pipeline.start("worker", OSML_PREDICT_API_KEY=key)

    # before: 401/403 counted as transient, and the worker retried forever with warnings only
    wait_until(lambda: worker.poll() is not None, timeout=30, what="the worker giving up on its API key")
    assert worker.returncode == EXIT_AUTH_REJECTED
    lines = [
        orjson.loads(line) for line in (pipeline.workdir / "worker-0.log").read_text().splitlines() if line[:1] == "{"
    ]
    [critical] = [line for line in lines if line["level"] == "CRITICAL"]
    assert "OSML_PREDICT_API_KEY" in critical["msg"] and status in critical["error"]
    # nothing was taken: the events wait for a worker with the right key (rabbitmqctl reports a quorum queue's
    # count a few seconds late, hence the poll)
    wait_until(
        lambda: queue_depth(pipeline.vhost, REQUESTED_QUEUE) == len(events), timeout=30, what="the events queued"
    )
    assert pipeline.broker.ready_count(DEAD_LETTER_QUEUE) == 0
    assert pipeline.rows() == 0
