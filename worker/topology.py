"""RabbitMQ names and declarations: one topic exchange, routing key = event type (docs/worker.md, Messages)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractQueue
from aio_pika.exceptions import ChannelClosed

from worker.events import READY, REQUESTED

log = logging.getLogger(__name__)

EXCHANGE: Final = "osml.events"
# a quorum queue: it counts deliveries, so a message that keeps failing is dead-lettered instead of looping
REQUESTED_QUEUE: Final = "osml.ml-prediction-requested.quorum"
# the classic queue of earlier releases: RabbitMQ refuses to redeclare a queue with other arguments, so the
# quorum queue has a new name and this one is retired (unbound, drained by the worker, deleted once empty)
CLASSIC_REQUESTED_QUEUE: Final = "osml.ml-prediction-requested"
DEAD_LETTER_QUEUE: Final = "osml.ml-prediction-requested.dlq"
REQUESTED_KEY: Final = REQUESTED
READY_KEY: Final = READY

# deliveries of one message at most (the first included): every failure the worker knows is dead-lettered by the
# worker itself, so this only catches the unknown (a crash on one message); broker connection cuts count too,
# hence room for a few dozen of them
DELIVERY_LIMIT: Final = 20
REQUESTED_ARGUMENTS: Final[dict[str, Any]] = {
    "x-queue-type": "quorum",
    "x-delivery-limit": DELIVERY_LIMIT,
    # over the limit (or rejected without requeue), a message goes to the DLQ with the broker's x-death header
    "x-dead-letter-exchange": "",
    "x-dead-letter-routing-key": DEAD_LETTER_QUEUE,
}

# headers on a dead-lettered message
REASON_HEADER: Final = "x-osml-reason"
DETAIL_HEADER: Final = "x-osml-detail"


@dataclass(frozen=True)
class Topology:
    exchange: AbstractExchange
    requested: AbstractQueue
    dead_letters: AbstractQueue
    # messages still waiting in the retired classic queue (the worker consumes it too while there are any)
    classic_backlog: int = 0


async def declare_exchange(channel: AbstractChannel) -> AbstractExchange:
    return await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)


async def declare(connection: AbstractConnection, channel: AbstractChannel) -> Topology:
    """Exchange, the worker's queue and its dead-letter queue, and the classic queue retired. Idempotent."""
    exchange = await declare_exchange(channel)
    dead_letters = await channel.declare_queue(DEAD_LETTER_QUEUE, durable=True)
    requested = await channel.declare_queue(REQUESTED_QUEUE, durable=True, arguments=REQUESTED_ARGUMENTS)
    await requested.bind(exchange, routing_key=REQUESTED_KEY)
    backlog = await retire_classic_queue(connection)
    return Topology(exchange=exchange, requested=requested, dead_letters=dead_letters, classic_backlog=backlog)


async def retire_classic_queue(connection: AbstractConnection) -> int:
    """Unbind the classic queue of earlier releases, so new events reach only the quorum queue, and delete it once
    it is empty and nobody consumes it. How many messages it still holds (0 when it is gone)."""
    # its own channel: the broker closes a channel on a passive declare of a missing queue or a refused delete
    channel = await connection.channel()
    try:
        try:
            classic = await channel.declare_queue(CLASSIC_REQUESTED_QUEUE, passive=True)
        except ChannelClosed:
            return 0
        await classic.unbind(EXCHANGE, routing_key=REQUESTED_KEY)
        backlog = int(classic.declaration_result.message_count or 0)
        if backlog == 0:
            try:
                await classic.delete(if_unused=True, if_empty=True)
                log.info("classic queue deleted", extra={"queue": CLASSIC_REQUESTED_QUEUE})
            except ChannelClosed:  # still consumed (a worker draining it): a later start deletes it
                return 0
        else:
            log.warning(
                "classic queue still holds events; draining it",
                extra={"queue": CLASSIC_REQUESTED_QUEUE, "count": backlog},
            )
        return backlog
    finally:
        if not channel.is_closed:
            await channel.close()
