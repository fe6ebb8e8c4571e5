"""Outbox relay: publish unsent outbox rows with publisher confirms, then mark them sent.

Rows are claimed with FOR UPDATE SKIP LOCKED inside the transaction that marks them, so relays running side by
side never claim the same row; a row is marked only after the broker confirmed it (at-least-once: a crash
between the confirm and the commit re-sends it). The worker's transaction NOTIFYs; polling is the fallback.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

import aio_pika
import psycopg
from aio_pika.abc import AbstractExchange
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from worker.migrate import psycopg_url, upgrade
from worker.resilience import Backoff, StopRequested, TransientError, retry_transient
from worker.settings import WorkerSettings
from worker.store import OUTBOX_CHANNEL
from worker.topology import declare_exchange

log = logging.getLogger(__name__)

_CLAIM: Final = """
SELECT id, event_id, routing_key, payload FROM outbox
WHERE sent_at IS NULL ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
"""
_PUBLISH_TIMEOUT_S: Final = 30.0
_MARK: Final = "UPDATE outbox SET sent_at = now() WHERE id = ANY(%s)"


class OutboxRelay:
    def __init__(self, *, database_url: str, exchange: AbstractExchange, batch_size: int) -> None:
        self._url = psycopg_url(database_url)
        self._exchange = exchange
        self._batch_size = batch_size
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def relay_once(self) -> int:
        """Publish and mark one batch of unsent rows; how many were sent. Failures are TransientError."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(self._url, connect_timeout=5)
            async with self._conn.transaction(), self._conn.cursor() as cur:
                await cur.execute(_CLAIM, (self._batch_size,))
                rows = await cur.fetchall()
                if not rows:
                    return 0
                await asyncio.gather(
                    *(self._publish(str(event_id), key, payload) for _, event_id, key, payload in rows)
                )
                await cur.execute(_MARK, ([row[0] for row in rows],))
        except psycopg.OperationalError as exc:
            await self.close()
            raise TransientError(f"database: {exc}") from exc
        except (TimeoutError, *CONNECTION_EXCEPTIONS) as exc:
            # not confirmed: the transaction rolled back and the rows stay unsent
            raise TransientError(f"broker: {exc!r}") from exc
        log.info("outbox rows published", extra={"count": len(rows)})
        return len(rows)

    async def _publish(self, event_id: str, routing_key: str, payload: str) -> None:
        message = aio_pika.Message(
            payload.encode(),
            content_type="application/json",
            message_id=event_id,
            type=routing_key,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await self._exchange.publish(message, routing_key=routing_key, timeout=_PUBLISH_TIMEOUT_S)


async def _wait_for_notify(listener: psycopg.AsyncConnection[Any], seconds: float) -> None:
    async for _ in listener.notifies(timeout=seconds, stop_after=1):
        return


async def run_relay(settings: WorkerSettings, stop: asyncio.Event) -> None:
    if settings.migrate_on_start:
        await asyncio.to_thread(upgrade, settings.database_url)
    backoff = Backoff(initial=settings.retry_initial_s, maximum=settings.retry_max_s)
    connection = await aio_pika.connect_robust(settings.broker_url)
    listener: psycopg.AsyncConnection[Any] | None = None
    relay: OutboxRelay | None = None
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await declare_exchange(channel)
        relay = OutboxRelay(database_url=settings.database_url, exchange=exchange, batch_size=settings.relay_batch_size)
        log.info("relay started", extra={"batchSize": settings.relay_batch_size})
        while not stop.is_set():
            try:
                if listener is None or listener.closed:
                    listener = await psycopg.AsyncConnection.connect(
                        psycopg_url(settings.database_url), autocommit=True, connect_timeout=5
                    )
                    await listener.execute(f"LISTEN {OUTBOX_CHANNEL}")
                # LISTEN before looking, so a row committed in between still wakes us
                sent = await retry_transient(relay.relay_once, backoff=backoff, what="relay outbox", stop=stop)
                if sent < settings.relay_batch_size:
                    await _wait_for_notify(listener, settings.relay_poll_interval_s)
            except StopRequested:
                break
            except psycopg.OperationalError as exc:
                log.warning("relay lost its LISTEN connection", extra={"error": str(exc)})
                listener = None
                await asyncio.sleep(backoff.delay(3))
    finally:
        if listener is not None:
            await listener.close()
        if relay is not None:
            await relay.close()
        await connection.close()
        log.info("relay stopped")
