"""AMQP adapter of the worker: consume REQUESTED with manual acks and bounded prefetch, process the messages in
hand as one batch, dead-letter the invalid ones with their reason, then ack - only after the commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from prometheus_client import Counter
from prometheus_client import Enum as EnumMetric

from osml.conventions import tracking_uri
from worker.amqp import Delivery, RawChannel, json_properties, publish_confirmed, reconnecting, session
from worker.facade_client import FacadeAuthRejected, FacadeClient, FacadeRejected
from worker.metrics import serve_metrics
from worker.migrate import migrated_on_start
from worker.processing import BatchProcessor, DeadLetter
from worker.resilience import Backoff, BreakerState, CircuitBreaker, StopRequested, retry_transient
from worker.scoring import Scorer
from worker.settings import WorkerSettings
from worker.store import PredictionStore
from worker.topology import (
    CLASSIC_REQUESTED_QUEUE,
    DEAD_LETTER_QUEUE,
    DETAIL_HEADER,
    REASON_HEADER,
    REQUESTED_QUEUE,
)

log = logging.getLogger(__name__)

CONSUMED = Counter("osml_worker_events_consumed", "REQUESTED messages processed and acked (dead letters included)")
DEAD_LETTERED = Counter("osml_worker_dead_lettered", "REQUESTED messages sent to the DLQ, by reason", ["reason"])
BREAKER_STATE = EnumMetric(
    "osml_worker_facade_breaker", "state of the circuit breaker in front of the facade", states=list(BreakerState)
)

# the exit status of a worker whose API key the facade refuses: a supervisor sees it, and restarting cannot help
EXIT_AUTH_REJECTED: Final = 3

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
    DEAD_LETTERED.labels(reason=letter.reason).inc()
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
        if amqp.topology.classic_backlog:
            # events left in the classic queue of an earlier release: same channel, so one ack settles both
            await amqp.raw.basic_consume(CLASSIC_REQUESTED_QUEUE, inbox.put, no_ack=False)
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
            CONSUMED.inc(len(batch))


async def facade_accepts_our_key(facade: Scorer, backoff: Backoff, stop: asyncio.Event) -> None:
    """Before taking any message: wait for the facade, and learn whether it accepts our key (FacadeAuthRejected
    if not). An empty batch is the cheapest call that passes the key check: the facade answers it with a 400."""
    with contextlib.suppress(FacadeRejected):
        await retry_transient(lambda: facade.predict_batch([]), backoff=backoff, what="facade check", stop=stop)


async def run_worker(settings: WorkerSettings, stop: asyncio.Event) -> int:
    """The worker until `stop`; its exit status (EXIT_AUTH_REJECTED when the facade refuses our API key)."""
    serve_metrics(settings.metrics_host, settings.worker_metrics_port)
    backoff = Backoff(initial=settings.retry_initial_s, maximum=settings.retry_max_s)
    if not await migrated_on_start(
        settings.database_url, enabled=settings.migrate_on_start, backoff=backoff, stop=stop
    ):
        return 0
    facade: Scorer
    if settings.worker_scorer == "in-process":
        from worker.local_scorer import InProcessScorer  # imports the serving stack only when asked to

        facade = InProcessScorer(
            tracking_uri=tracking_uri(),
            poll_seconds=settings.worker_model_poll_s,
            database_url=settings.database_url,
            shadow_queue_rows=settings.worker_shadow_queue_rows,
            explain=settings.worker_explain,
        )
    else:
        facade = FacadeClient(
            base_url=settings.facade_url,
            api_key=settings.predict_api_key.get_secret_value() if settings.predict_api_key else None,
            timeout_s=settings.facade_timeout_s,
            explain=settings.worker_explain,
            breaker=CircuitBreaker(
                failure_threshold=settings.breaker_failure_threshold,
                reset_s=settings.breaker_reset_s,
                on_change=lambda state: BREAKER_STATE.state(state),
            ),
        )
    store = PredictionStore(settings.database_url)
    processor = BatchProcessor(facade=facade, store=store, backoff=backoff, stop=stop)
    try:
        await facade_accepts_our_key(facade, backoff, stop)
        # on stop or a lost connection, messages in hand stay unacked: the broker redelivers them and the store
        # skips any already saved
        await reconnecting(lambda: consume(settings, processor, stop), backoff=backoff, stop=stop)
    except StopRequested:
        pass
    except FacadeAuthRejected as exc:
        # the messages in hand go back unacked; nothing is consumed until the key is fixed
        log.critical(
            "the facade refuses OSML_PREDICT_API_KEY; stopping (set the facade's predict or admin key)",
            extra={"error": str(exc), "facade": settings.facade_url, "exitCode": EXIT_AUTH_REJECTED},
        )
        return EXIT_AUTH_REJECTED
    finally:
        await facade.aclose()
        await store.close()
        log.info("worker stopped")
    return 0
