"""Outbox relay: publish unsent outbox rows with publisher confirms, then mark them sent (and, every
`outbox_prune_interval_s`, delete the rows sent longer than `outbox_retention_hours` ago).

READY events are published `mandatory`: one that no queue takes comes back, stays unsent and is tried again with
backoff (a READY is never confirmed into the void), while the backlog and its age show on /metrics.

Rows are claimed with FOR UPDATE SKIP LOCKED inside the transaction that marks them, so relays running side by
side never claim the same row; a row is marked only after the broker confirmed it (at-least-once: a crash
between the confirm and the commit re-sends it). The worker's transaction NOTIFYs; polling is the fallback.
A lost broker connection rolls the claim back and the relay reconnects (e.g. across a broker restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import psycopg
from prometheus_client import Counter, Gauge

from worker.amqp import RawChannel, Unroutable, json_properties, publish_confirmed, reconnecting, session
from worker.metrics import serve_metrics
from worker.migrate import migrated_on_start, psycopg_url
from worker.resilience import Backoff, TransientError, retry_transient
from worker.settings import WorkerSettings
from worker.store import OUTBOX_CHANNEL
from worker.topology import EXCHANGE

log = logging.getLogger(__name__)

_CLAIM: Final = """
SELECT id, event_id, routing_key, payload FROM outbox
WHERE sent_at IS NULL ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
"""
_MARK: Final = "UPDATE outbox SET sent_at = now() WHERE id = ANY(%s)"
# in slices, so each transaction stays short beside the relay's claims
_PRUNE: Final = """
DELETE FROM outbox WHERE id IN (
    SELECT id FROM outbox WHERE sent_at < now() - make_interval(secs => %s) ORDER BY sent_at LIMIT %s
)
"""
_PRUNE_SLICE: Final = 5000
_BACKLOG: Final = """
SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM outbox WHERE sent_at IS NULL
"""
_BACKLOG_EVERY_S: Final = 1.0

PUBLISHED = Counter("osml_relay_ready_published", "READY events confirmed by the broker and marked sent")
UNROUTABLE = Counter("osml_relay_ready_unroutable", "READY publishes returned by the broker: no queue bound")
BACKLOG = Gauge("osml_relay_outbox_backlog", "outbox rows not sent yet")
OLDEST_AGE = Gauge("osml_relay_outbox_oldest_unsent_age_seconds", "age of the oldest unsent outbox row (0: none)")


class OutboxRelay:
    def __init__(self, *, database_url: str, batch_size: int) -> None:
        self._url = psycopg_url(database_url)
        self._batch_size = batch_size
        self._conn: psycopg.AsyncConnection[Any] | None = None
        # when the next prune is due; kept across broker sessions, so a reconnect does not prune again
        self.next_prune = time.monotonic()
        self._backlog_at = 0.0

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @contextlib.asynccontextmanager
    async def _database(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """The relay's connection, opened on demand; a database failure closes it and is a TransientError."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(self._url, connect_timeout=5)
            yield self._conn
        except psycopg.OperationalError as exc:
            await self.close()
            raise TransientError(f"database: {exc}") from exc

    async def relay_once(self, raw: RawChannel) -> int:
        """Publish and mark one batch of unsent rows; how many were sent. Database trouble, and READY events no
        queue took (they stay unsent), are a TransientError; broker trouble propagates (the claim is rolled back,
        the rows stay unsent)."""
        async with self._database() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(_CLAIM, (self._batch_size,))
            rows = await cur.fetchall()
            if not rows:
                return 0
            results = await asyncio.gather(
                *(
                    publish_confirmed(
                        raw,
                        payload.encode(),
                        exchange=EXCHANGE,
                        routing_key=key,
                        properties=json_properties(message_id=str(event_id), type_=key),
                        mandatory=True,
                    )
                    for _, event_id, key, payload in rows
                ),
                return_exceptions=True,
            )
            failure = next((r for r in results if isinstance(r, BaseException) and not isinstance(r, Unroutable)), None)
            if failure is not None:
                raise failure
            sent = [row[0] for row, result in zip(rows, results, strict=True) if result is None]
            if sent:
                await cur.execute(_MARK, (sent,))
        PUBLISHED.inc(len(sent))
        if sent:
            log.info("outbox rows published", extra={"count": len(sent)})
        if returned := len(rows) - len(sent):
            UNROUTABLE.inc(returned)
            await self.refresh_backlog()  # the retry loop holds the relay here until a queue takes them
            raise TransientError(
                f"{returned} READY returned by the broker: no queue is bound to {EXCHANGE!r} for them; kept unsent"
            )
        return len(sent)

    async def refresh_backlog(self) -> None:
        """The backlog gauges, at most every _BACKLOG_EVERY_S (one indexed query)."""
        if time.monotonic() - self._backlog_at < _BACKLOG_EVERY_S:
            return
        async with self._database() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(_BACKLOG)
            row = await cur.fetchone()
        assert row is not None
        BACKLOG.set(row[0])
        OLDEST_AGE.set(float(row[1]))
        self._backlog_at = time.monotonic()

    async def prune_sent(self, *, older_than_s: float) -> int:
        """Delete rows sent more than `older_than_s` ago; how many. Unsent rows are never touched."""
        pruned, deleted = 0, _PRUNE_SLICE
        async with self._database() as conn:
            while deleted == _PRUNE_SLICE:
                async with conn.transaction(), conn.cursor() as cur:
                    await cur.execute(_PRUNE, (older_than_s, _PRUNE_SLICE))
                    deleted = cur.rowcount
                pruned += deleted
        if pruned:
            log.info("sent outbox rows pruned", extra={"count": pruned, "olderThanS": older_than_s})
        return pruned


async def _wait_for_notify(listener: psycopg.AsyncConnection[Any], seconds: float) -> None:
    async for _ in listener.notifies(timeout=seconds, stop_after=1):
        return


async def _listen(database_url: str) -> psycopg.AsyncConnection[Any]:
    try:
        listener = await psycopg.AsyncConnection.connect(psycopg_url(database_url), autocommit=True, connect_timeout=5)
        # LISTEN before looking, so a row committed in between still wakes us
        await listener.execute(f"LISTEN {OUTBOX_CHANNEL}")
    except psycopg.OperationalError as exc:
        raise TransientError(f"database (LISTEN): {exc}") from exc
    return listener


async def _relay_session(settings: WorkerSettings, relay: OutboxRelay, backoff: Backoff, stop: asyncio.Event) -> None:
    listener: psycopg.AsyncConnection[Any] | None = None
    retention_s = settings.outbox_retention_hours * 3600
    async with session(settings.broker_url, name="osml-relay") as amqp:
        log.info("relay connected", extra={"batchSize": settings.relay_batch_size})
        try:
            while not stop.is_set():
                if listener is None or listener.closed:
                    listener = await retry_transient(
                        lambda: _listen(settings.database_url), backoff=backoff, what="relay listen", stop=stop
                    )
                sent = await retry_transient(
                    lambda: relay.relay_once(amqp.raw), backoff=backoff, what="relay outbox", stop=stop
                )
                await retry_transient(relay.refresh_backlog, backoff=backoff, what="outbox backlog", stop=stop)
                if time.monotonic() >= relay.next_prune:
                    await retry_transient(
                        lambda: relay.prune_sent(older_than_s=retention_s),
                        backoff=backoff,
                        what="prune outbox",
                        stop=stop,
                    )
                    relay.next_prune = time.monotonic() + settings.outbox_prune_interval_s
                if sent < settings.relay_batch_size:
                    try:
                        await _wait_for_notify(listener, settings.relay_poll_interval_s)
                    except psycopg.OperationalError as exc:
                        log.warning("relay lost its LISTEN connection", extra={"error": str(exc)})
                        listener = None
        finally:
            if listener is not None:
                await listener.close()


async def run_relay(settings: WorkerSettings, stop: asyncio.Event) -> int:
    serve_metrics(settings.metrics_host, settings.relay_metrics_port)
    backoff = Backoff(initial=settings.retry_initial_s, maximum=settings.retry_max_s)
    if not await migrated_on_start(
        settings.database_url, enabled=settings.migrate_on_start, backoff=backoff, stop=stop
    ):
        return 0
    relay = OutboxRelay(database_url=settings.database_url, batch_size=settings.relay_batch_size)
    try:
        await reconnecting(lambda: _relay_session(settings, relay, backoff, stop), backoff=backoff, stop=stop)
    finally:
        await relay.close()
        log.info("relay stopped")
    return 0
