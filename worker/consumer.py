"""AMQP adapter of the worker: consume REQUESTED with manual acks and bounded prefetch, process the messages in
hand as one batch, dead-letter the invalid ones with their reason, then ack - only after the commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from worker.facade_client import FacadeClient
from worker.migrate import upgrade
from worker.processing import BatchProcessor, DeadLetter
from worker.resilience import Backoff, CircuitBreaker, StopRequested
from worker.settings import WorkerSettings
from worker.store import PredictionStore
from worker.topology import DEAD_LETTER_QUEUE, DETAIL_HEADER, REASON_HEADER, declare

log = logging.getLogger(__name__)

_MAX_DETAIL: Final = 1000
_IDLE_CHECK_S: Final = 0.5  # how often an idle worker looks at the stop flag


class Inbox:
    """Messages delivered and not yet taken. `take` hands out what is in hand, up to `size`, waiting at most
    `linger_s` for a batch to fill - without a task or timer per message."""

    def __init__(self, *, size: int, linger_s: float) -> None:
        self._size = size
        self._linger_s = linger_s
        self._items: list[AbstractIncomingMessage] = []
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()

    async def put(self, message: AbstractIncomingMessage) -> None:
        self._items.append(message)
        self._arrived.set()
        if len(self._items) >= self._size:
            self._full.set()

    async def take(self) -> list[AbstractIncomingMessage]:
        """A batch, or [] after _IDLE_CHECK_S without any message (so the caller can look at its stop flag)."""
        if not self._items:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=_IDLE_CHECK_S)
            if not self._items:
                return []
        if len(self._items) < self._size and self._linger_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), timeout=self._linger_s)
        batch, self._items = self._items[: self._size], self._items[self._size :]
        if not self._items:
            self._arrived.clear()
        if len(self._items) < self._size:
            self._full.clear()
        return batch


async def dead_letter(channel: AbstractChannel, message: AbstractIncomingMessage, letter: DeadLetter) -> None:
    log.warning(
        "event dead-lettered",
        extra={
            "reason": letter.reason,
            "detail": letter.detail[:_MAX_DETAIL],
            "eventId": letter.event_id,
            "orderId": letter.order_id,
            "messageId": message.message_id,
        },
    )
    headers = dict(message.headers or {})
    headers.update(
        {
            REASON_HEADER: letter.reason,
            DETAIL_HEADER: letter.detail[:_MAX_DETAIL],
            "x-osml-original-routing-key": message.routing_key or "",
        }
    )
    await channel.default_exchange.publish(
        aio_pika.Message(
            message.body,
            headers=headers,
            content_type=message.content_type,
            message_id=message.message_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        ),
        routing_key=DEAD_LETTER_QUEUE,
    )


async def run_worker(settings: WorkerSettings, stop: asyncio.Event) -> None:
    if settings.migrate_on_start:
        await asyncio.to_thread(upgrade, settings.database_url)
    backoff = Backoff(initial=settings.retry_initial_s, maximum=settings.retry_max_s)
    facade = FacadeClient(
        base_url=settings.facade_url,
        api_key=settings.predict_api_key.get_secret_value() if settings.predict_api_key else None,
        timeout_s=settings.facade_timeout_s,
        breaker=CircuitBreaker(failure_threshold=settings.breaker_failure_threshold, reset_s=settings.breaker_reset_s),
    )
    store = PredictionStore(settings.database_url)
    processor = BatchProcessor(facade=facade, store=store, backoff=backoff, stop=stop)
    connection = await aio_pika.connect_robust(settings.broker_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=settings.worker_prefetch)
        topology = await declare(channel)
        inbox = Inbox(size=settings.worker_batch_size, linger_s=settings.worker_batch_linger_s)
        await topology.requested.consume(inbox.put)
        log.info(
            "worker consuming",
            extra={
                "queue": topology.requested.name,
                "prefetch": settings.worker_prefetch,
                "batchSize": settings.worker_batch_size,
            },
        )
        while not stop.is_set():
            batch = await inbox.take()
            if not batch:
                continue
            try:
                outcomes = await processor.process([m.body for m in batch])
            except StopRequested:
                break  # unacked: the broker redelivers them
            try:
                await asyncio.gather(
                    *(
                        dead_letter(channel, m, o)
                        for m, o in zip(batch, outcomes, strict=True)
                        if isinstance(o, DeadLetter)
                    )
                )
                # batches are handled one at a time in delivery order: this settles every message of the batch
                await batch[-1].ack(multiple=True)
            except CONNECTION_EXCEPTIONS as exc:
                # the channel went away with these messages: the broker redelivers them and the store skips
                # the ones already saved
                log.warning(
                    "could not settle a batch, it will be redelivered",
                    extra={"error": repr(exc), "messages": len(batch)},
                )
    finally:
        await connection.close()
        await facade.aclose()
        await store.close()
        log.info("worker stopped")
