"""AMQP plumbing shared by the worker, the relay and the simulator.

aio-pika declares the topology and owns the connection; the per-message hot path (consume, ack, publish with
confirms) goes straight to the underlying aiormq channel, which costs about half as much CPU per message as
aio-pika's message objects - the difference between keeping up with hundreds of events per second or not on
a small machine. A lost connection ends a session; the caller reconnects (no hidden robust-reconnect state).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import aio_pika
import aiormq.abc
from aio_pika.abc import AbstractChannel, AbstractConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from pamqp import commands as spec

from worker.resilience import Backoff, StopRequested, retry_transient
from worker.topology import Topology, declare

PERSISTENT: Final = 2
PUBLISH_TIMEOUT_S: Final = 30.0

RawChannel = aiormq.abc.AbstractChannel
Delivery = aiormq.abc.DeliveredMessage


class PublishNotConfirmed(ConnectionError):
    """The broker nacked a publish (or it timed out): treated like a lost connection, i.e. retried."""


class Unroutable(Exception):
    """A mandatory publish that no queue took: the broker returned it (and then confirmed it)."""


@dataclass(frozen=True)
class Session:
    connection: AbstractConnection
    channel: AbstractChannel
    raw: RawChannel
    topology: Topology

    @property
    def lost(self) -> bool:
        # aio-pika's plain connection does not always notice a close forced by the broker; aiormq's channel does
        return self.raw.is_closed or self.connection.is_closed


@asynccontextmanager
async def session(url: str, *, name: str, prefetch: int | None = None) -> AsyncIterator[Session]:
    """One connection (named `name` in the broker's connection list) with one confirming channel and the topology
    declared; closed on exit."""
    connection = await aio_pika.connect(url, client_properties={"connection_name": name})
    try:
        channel = await connection.channel(publisher_confirms=True)
        if prefetch is not None:
            await channel.set_qos(prefetch_count=prefetch)
        topology = await declare(connection, channel)
        yield Session(connection, channel, await channel.get_underlay_channel(), topology)
    finally:
        await connection.close()


def json_properties(
    *,
    message_id: str | None = None,
    type_: str | None = None,
    headers: dict[str, Any] | None = None,
    content_type: str | None = "application/json",
) -> spec.Basic.Properties:
    return spec.Basic.Properties(
        content_type=content_type,
        delivery_mode=PERSISTENT,
        message_id=message_id,
        message_type=type_,
        headers=headers,
    )


async def publish_confirmed(
    raw: RawChannel,
    body: bytes,
    *,
    exchange: str,
    routing_key: str,
    properties: spec.Basic.Properties,
    mandatory: bool = False,
) -> None:
    """Publish and wait for the broker's confirm; PublishNotConfirmed on a nack or timeout, Unroutable when a
    `mandatory` message reached no queue (the broker confirms those too: without `mandatory` they vanish)."""
    try:
        confirmation = await raw.basic_publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            properties=properties,
            mandatory=mandatory,
            timeout=PUBLISH_TIMEOUT_S,
        )
    except TimeoutError as exc:
        raise PublishNotConfirmed(f"no confirm within {PUBLISH_TIMEOUT_S}s") from exc
    # aiormq resolves a returned message's confirmation with the message itself (it matches it by message_id)
    if isinstance(confirmation, Delivery):
        raise Unroutable(f"no queue is bound to {exchange!r} for {routing_key!r}")
    if not isinstance(confirmation, spec.Basic.Ack):
        raise PublishNotConfirmed(f"broker answered {confirmation!r}")


async def reconnecting(run_session: Callable[[], Awaitable[None]], *, backoff: Backoff, stop: asyncio.Event) -> None:
    """Run broker sessions until `stop`: a lost connection is retried with backoff, growing to its ceiling
    (unacked messages go back to the queue and are recognised when they return). A session returns only once
    `stop` is set."""
    with contextlib.suppress(StopRequested):
        await retry_transient(
            run_session, backoff=backoff, what="broker connection", stop=stop, on=CONNECTION_EXCEPTIONS
        )
