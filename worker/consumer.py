"""AMQP adapter of the worker: consume REQUESTED with manual acks and bounded prefetch, process the messages in
hand as one batch, dead-letter the invalid ones with their reason, then ack - only after the commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from osml.conventions import tracking_uri
from worker.amqp import Delivery, RawChannel, json_properties, publish_confirmed, reconnecting, session
from worker.facade_client import FacadeClient
from worker.migrate import migrated_on_start
from worker.processing import BatchProcessor, DeadLetter
from worker.resilience import Backoff, CircuitBreaker
from worker.scoring import Scorer
from worker.settings import WorkerSettings
from worker.store import PredictionStore
from worker.topology import DEAD_LETTER_QUEUE, DETAIL_HEADER, REASON_HEADER, REQUESTED_QUEUE

log = logging.getLogger(__name__)

_MAX_DETAIL: Final = 1000
_IDLE_CHECK_S: Final = 0.5  # how often an idle worker looks at its stop flag and connection


class Inbox:
    """Messages delivered and not yet taken. `take` hands out what is in hand, up to `size`, waiting at most
    `linger_s` for a batch to fill - without a task or timer per message."""

    def __init__(self, *, size: int, linger_s: float) -> None:
        self._size = size
        self._linger_s = linger_s
        self._items: list[Delivery] = []
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()

    async def put(self, message: Delivery) -> None:
        self._items.append(message)
        self._arrived.set()
        if len(self._items) >= self._size:
            self._full.set()

    async def take(self) -> list[Delivery]:
        """A batch, or [] after _IDLE_CHECK_S without any message."""
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


async def dead_letter(raw: RawChannel, message: Delivery, letter: DeadLetter) -> None:
    properties = message.header.properties
    log.warning(
        "event dead-lettered",
        extra={
            "reason": letter.reason,
            "detail": letter.detail[:_MAX_DETAIL],
            "eventId": letter.event_id,
            "orderId": letter.order_id,
            "messageId": properties.message_id,
        },
    )
    headers = dict(properties.headers or {})
    headers.update(
        {
            REASON_HEADER: letter.reason,
            DETAIL_HEADER: letter.detail[:_MAX_DETAIL],
            "x-osml-original-routing-key": message.routing_key or "",
        }
    )
    dead = json_properties(
        message_id=properties.message_id,
        type_=properties.message_type,
        headers=headers,
        content_type=properties.content_type,  # a dead letter keeps what it arrived with
    )
    await publish_confirmed(raw, message.body, exchange="", routing_key=DEAD_LETTER_QUEUE, properties=dead)


async def consume(settings: WorkerSettings, processor: BatchProcessor, stop: asyncio.Event) -> None:
    """One broker session: consume until stop is set; connection trouble propagates to the caller."""
    async with session(settings.broker_url, name="osml-worker", prefetch=settings.worker_prefetch) as amqp:
        inbox = Inbox(size=settings.worker_batch_size, linger_s=settings.worker_batch_linger_s)
        await amqp.raw.basic_consume(REQUESTED_QUEUE, inbox.put, no_ack=False)
        log.info(
            "worker consuming",
            extra={
                "queue": REQUESTED_QUEUE,
                "prefetch": settings.worker_prefetch,
                "batchSize": settings.worker_batch_size,
            },
        )
        while not stop.is_set():
            batch = await inbox.take()
            if not batch:
                if amqp.lost:
                    raise ConnectionError("broker connection closed")
                continue
            outcomes = await processor.process([m.body for m in batch])
            await asyncio.gather(
                *(
                    dead_letter(amqp.raw, m, o)
                    for m, o in zip(batch, outcomes, strict=True)
                    if isinstance(o, DeadLetter)
                )
            )
            # batches are handled one at a time in delivery order: this settles every message of the batch
            last_tag = batch[-1].delivery_tag
            assert last_tag is not None
            await amqp.raw.basic_ack(last_tag, multiple=True)


async def run_worker(settings: WorkerSettings, stop: asyncio.Event) -> None:
    backoff = Backoff(initial=settings.retry_initial_s, maximum=settings.retry_max_s)
    if not await migrated_on_start(
        settings.database_url, enabled=settings.migrate_on_start, backoff=backoff, stop=stop
    ):
        return
    facade: Scorer
    if settings.worker_scorer == "in-process":
        from worker.local_scorer import InProcessScorer  # imports the serving stack only when asked to

        facade = InProcessScorer(tracking_uri=tracking_uri(), poll_seconds=settings.worker_model_poll_s)
    else:
        facade = FacadeClient(
            base_url=settings.facade_url,
            api_key=settings.predict_api_key.get_secret_value() if settings.predict_api_key else None,
            timeout_s=settings.facade_timeout_s,
            breaker=CircuitBreaker(
                failure_threshold=settings.breaker_failure_threshold, reset_s=settings.breaker_reset_s
            ),
        )
    store = PredictionStore(settings.database_url)
    processor = BatchProcessor(facade=facade, store=store, backoff=backoff, stop=stop)
    try:
        # on stop or a lost connection, messages in hand stay unacked: the broker redelivers them and the store
        # skips any already saved
        await reconnecting(lambda: consume(settings, processor, stop), backoff=backoff, stop=stop, log=log)
    finally:
        await facade.aclose()
        await store.close()
        log.info("worker stopped")
