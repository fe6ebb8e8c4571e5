"""RabbitMQ names and declarations (docs/worker.md): one topic exchange, routing key = event type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from worker.events import READY, REQUESTED

EXCHANGE: Final = "osml.events"
REQUESTED_QUEUE: Final = "osml.ml-prediction-requested"
DEAD_LETTER_QUEUE: Final = "osml.ml-prediction-requested.dlq"
REQUESTED_KEY: Final = REQUESTED
READY_KEY: Final = READY

# headers on a dead-lettered message
REASON_HEADER: Final = "x-osml-reason"
DETAIL_HEADER: Final = "x-osml-detail"


@dataclass(frozen=True)
class Topology:
    exchange: AbstractExchange
    requested: AbstractQueue
    dead_letters: AbstractQueue


async def declare_exchange(channel: AbstractChannel) -> AbstractExchange:
    return await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)


async def declare(channel: AbstractChannel) -> Topology:
    """Exchange, the worker's queue and its dead-letter queue. Idempotent."""
    exchange = await declare_exchange(channel)
    dead_letters = await channel.declare_queue(DEAD_LETTER_QUEUE, durable=True)
    # a message rejected without requeue also lands in the DLQ (the worker publishes there itself, with reasons)
    requested = await channel.declare_queue(
        REQUESTED_QUEUE,
        durable=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": DEAD_LETTER_QUEUE},
    )
    await requested.bind(exchange, routing_key=REQUESTED_KEY)
    return Topology(exchange=exchange, requested=requested, dead_letters=dead_letters)
