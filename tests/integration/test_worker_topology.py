"""The worker's queue on a real RabbitMQ: a quorum queue whose delivery limit ends any loop in the DLQ, and the
classic queue of earlier releases drained and retired without losing an event."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from tests.conftest_worker import Facade, check_ready_events, open_pipeline, queue_depth, requested_events
from tests.services import rabbitmqctl
from tests.support import wait_until
from worker.topology import (
    CLASSIC_REQUESTED_QUEUE,
    DEAD_LETTER_QUEUE,
    DELIVERY_LIMIT,
    EXCHANGE,
    REQUESTED_KEY,
    REQUESTED_QUEUE,
    declare,
)

pytestmark = pytest.mark.integration


async def test_a_message_that_keeps_coming_back_is_dead_lettered_at_the_delivery_limit(amqp_url: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        topology = await declare(connection, channel)
        deliveries = 0

        async def fail_every_time(message: AbstractIncomingMessage) -> None:  # as a worker crashing on it would
            nonlocal deliveries
            deliveries += 1
            await message.nack(requeue=True)

        letters: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        await topology.requested.consume(fail_every_time)
        await topology.dead_letters.consume(letters.put, no_ack=True)
        await topology.exchange.publish(aio_pika.Message(b'{"poison": true}'), routing_key=REQUESTED_KEY)

        # before: a classic queue without a limit, and the message came back for ever
        letter = await asyncio.wait_for(letters.get(), timeout=30)
        assert letter.body == b'{"poison": true}'
        assert letter.headers["x-death"][0]["reason"] == "delivery_limit"  # type: ignore[index,call-overload]
        assert deliveries == DELIVERY_LIMIT + 1  # the first delivery, then DELIVERY_LIMIT redeliveries
    finally:
        await connection.close()


async def _earlier_release_with_waiting_events(amqp_url: str, bodies: list[bytes]) -> None:
    """The topology up to now: a classic queue under the old name, bound, holding `bodies`."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        await channel.declare_queue(DEAD_LETTER_QUEUE, durable=True)
        classic = await channel.declare_queue(
            CLASSIC_REQUESTED_QUEUE,
            durable=True,
            arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": DEAD_LETTER_QUEUE},
        )
        await classic.bind(exchange, routing_key=REQUESTED_KEY)
        for body in bodies:
            await exchange.publish(aio_pika.Message(body, delivery_mode=2), routing_key=REQUESTED_KEY)
    finally:
        await connection.close()


def test_events_left_in_the_classic_queue_are_drained_and_the_queue_retired(
    amqp_url: str, pg_database: str, facade: Facade, tmp_path: Path
) -> None:
    waiting = requested_events(40, seed=14)
    later = requested_events(40, seed=15)
    asyncio.run(_earlier_release_with_waiting_events(amqp_url, [body for _, body, _ in waiting]))

    with open_pipeline(amqp_url, pg_database, facade, tmp_path) as pipe:
        worker = pipe.start_worker()
        pipe.start_relay()
        # the classic queue is unbound by now: later events reach the quorum queue only, once each
        pipe.broker.publish([body for _, body, _ in later])
        pipe.wait_settled(80)
        assert queue_depth(pipe.vhost, CLASSIC_REQUESTED_QUEUE) == 0
        check_ready_events(pipe, waiting + later)

        # the next start finds it empty and unused, and deletes it
        pipe.stop_all()
        assert worker.poll() is not None
        pipe.start_worker()

        def queues() -> set[str]:
            out = rabbitmqctl("list_queues", "-p", pipe.vhost, "name", "--formatter", "json")
            return {q["name"] for q in json.loads(out)}

        wait_until(lambda: CLASSIC_REQUESTED_QUEUE not in queues(), timeout=30, what="the classic queue deleted")
        assert REQUESTED_QUEUE in queues()
