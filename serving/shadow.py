"""Shadow scoring: the pair under the registry alias `challenger`, scored beside production, off the answer path.

`ShadowScorer.offer` is called on the request thread after production's answers are computed; it only appends a
reference to the requests and answers to a bounded buffer (or, when the buffer is full, counts the rows as
dropped) and never waits. One daemon thread takes the buffer every `flush_seconds` (sooner once `batch_rows`
rows wait), predicts them with the challenger through `serving.dataplane.predict_with` (one call per batch: a
model call on 500 rows costs barely more than on one), records the metrics and writes one row per order to
`orders_prediction_shadow`, production's answer beside the challenger's, so live accuracy compares the two on
exactly the same orders (docs/operations.md, "Shadow challenger"). With no challenger loaded, `offer` is one
attribute read.

Rows are stored on PostgreSQL only, where the migration makes the table and live accuracy reads it. On the
embedded SQLite default nothing would read them, and SQLite's executemany lets the GIL go at every row it steps
through: with the rows written there, /predict p50 was measured several times higher while a challenger was
loaded (docs/serving.md, "Shadow challenger"). There the shadow keeps its metrics only.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple, cast

import psycopg
from sqlalchemy import Column, DateTime, Engine, Float, Integer, MetaData, String, Table, Uuid

from osml.registry import ModelPair
from serving.dataplane import predict_with
from serving.metrics import ShadowMetrics
from serving.model_store import ActivePair, ModelStore
from serving.payloads import PredictRequest

log = logging.getLogger("osml.serving.shadow")

TABLE: Final = "orders_prediction_shadow"

metadata = MetaData()
# the schema of record is the worker's migration (worker/migrations/versions/0004_shadow_predictions.py); this
# definition names the columns rows are written to, and lets tests read them
shadow_predictions = Table(
    TABLE,
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("request_id", String(200), nullable=False),
    Column("order_id", String(200), nullable=False),
    Column("predicted_at", DateTime(timezone=True), nullable=False),
    Column("production_version", String(64), nullable=False),
    Column("production_sla_risk", Float, nullable=False),
    Column("production_eta_minutes", Integer, nullable=False),
    Column("challenger_version", String(64), nullable=False),
    Column("challenger_sla_risk", Float, nullable=False),
    Column("challenger_eta_minutes", Integer, nullable=False),
)


_COLUMNS: Final = tuple(column.name for column in shadow_predictions.columns)
_COPY: Final = f"COPY {TABLE} ({', '.join(_COLUMNS)}) FROM STDIN"


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    return (data[start : start + size] for start in range(0, len(data), size))


class ShadowSink:
    """Writes shadow rows to PostgreSQL with COPY, on a connection of the service's engine (blocking; the shadow
    thread only). COPY, not an INSERT through SQLAlchemy: 4 µs of this thread's time per row instead of 13, and
    every microsecond here holds the GIL the request thread needs.

    The table is the worker's migration's, and the writer's role needs INSERT on it (infra/postgres/grants.sql). A
    failed write (table or grant missing, database down) loses that batch's rows: they are counted and logged, once
    per kind of error, and the metrics go on."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._reported: set[str] = set()

    def write(self, rows: list[dict[str, Any]]) -> bool:
        try:
            with self._engine.begin() as conn:
                driver = cast(psycopg.Connection[Any], conn.connection.driver_connection)  # sink_for: PostgreSQL
                with driver.cursor() as cursor, cursor.copy(_COPY) as copy:
                    for row in rows:
                        copy.write_row([row[column] for column in _COLUMNS])
        except Exception as exc:
            kind = type(exc).__name__
            if kind not in self._reported:
                self._reported.add(kind)
                log.warning(
                    "shadow rows not stored; metrics only until the table is writable",
                    extra={"table": TABLE, "error": str(exc).splitlines()[0]},
                )
            return False
        return True


class _Offer(NamedTuple):  # a tuple: built on the request thread, where a frozen dataclass costs a microsecond
    at: float
    production_version: str
    requests: Sequence[PredictRequest]
    answers: Sequence[dict[str, Any]]


def sink_for(engine: Engine) -> ShadowSink | None:
    """The sink for a service's database: PostgreSQL's, or none (metrics only; see the module's docstring)."""
    if engine.dialect.name == "postgresql":
        return ShadowSink(engine)
    log.info(
        "shadow rows are stored on PostgreSQL only; this database keeps none", extra={"dialect": engine.dialect.name}
    )
    return None


class ShadowScorer:
    """Owns the challenger's ModelStore, the bounded buffer and the thread that empties it."""

    def __init__(
        self,
        *,
        read_challenger: Callable[[], ModelPair | None],
        load: Callable[[ModelPair], ActivePair],
        poll_seconds: float,
        metrics: ShadowMetrics,
        sink: ShadowSink | None,
        capacity_rows: int,
        batch_rows: int = 512,
        flush_seconds: float = 1.0,
    ) -> None:
        self._read_challenger = read_challenger
        self.store = ModelStore(
            read_production=self._read_alias,
            load=load,
            poll_seconds=poll_seconds,
            on_swap=self._swapped,
        )
        self._metrics = metrics
        self._sink = sink
        self._capacity = capacity_rows
        self._batch_rows = batch_rows
        self._flush_seconds = flush_seconds
        self._ready = threading.Condition(threading.Lock())  # not re-entrant: cheaper to take per request
        self._pending: list[_Offer] = []
        self._rows = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        metrics.queued.set_function(lambda: self._rows)

    def _read_alias(self) -> ModelPair | None:
        pair = self._read_challenger()
        if pair is None and self.store.current is not None:
            # the alias was removed: production's store keeps its last pair, a challenger simply stops
            log.info(
                "challenger alias removed; shadow scoring stops",
                extra={"modelVersion": self.store.current.model_version},
            )
            self.store.current = None
            self._metrics.challenger.clear()
        return pair

    def _swapped(self, active: ActivePair) -> None:
        self._metrics.challenger.clear()
        self._metrics.challenger.labels(active.model_version).set(1)

    # -- the request thread --

    def offer(
        self, production_version: str, requests: Sequence[PredictRequest], answers: Sequence[dict[str, Any]]
    ) -> None:
        """Hand production's answered requests to the challenger; never waits, never raises."""
        challenger = self.store.current
        if challenger is None or challenger.model_version == production_version:
            return
        rows = len(requests)
        with self._ready:
            accepted = self._rows + rows <= self._capacity
            if accepted:
                self._pending.append(_Offer(time.time(), production_version, requests, answers))
                self._rows += rows
                if self._rows >= self._batch_rows:
                    self._ready.notify()
        if not accepted:
            self._metrics.dropped.inc(rows)

    # -- the shadow thread --

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="osml-shadow", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Score and store what is queued, then stop the thread."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._ready:
                if not self._closing and self._rows < self._batch_rows:
                    self._ready.wait(self._flush_seconds)
                batch, self._pending, self._rows = self._pending, [], 0
                closing = self._closing
            if batch:
                try:
                    self._score(batch)
                except Exception:  # a bug here must not end the thread: the next batch is scored again
                    log.exception("shadow batch failed")
            if closing:
                return

    def _score(self, batch: list[_Offer]) -> None:
        challenger = self.store.current
        if challenger is None:
            return
        offers = [o for o in batch if o.production_version != challenger.model_version]
        requests = [r for o in offers for r in o.requests]
        if not requests:
            return
        try:
            version, answers = predict_with(challenger, requests)
        except Exception as exc:
            self._metrics.errors.labels("predict").inc(len(requests))
            log.warning(
                "challenger prediction failed", extra={"modelVersion": challenger.model_version, "error": str(exc)}
            )
            return
        self._metrics.predictions.labels(version).inc(len(answers))
        rows = []
        shadow = iter(answers)
        # one system call for the whole batch's ids: uuid4 per row would drop and retake the GIL once per row, each
        # time taking it from the request thread
        ids = (uuid.UUID(bytes=chunk, version=4) for chunk in _chunks(os.urandom(16 * len(answers)), 16))
        for offer in offers:
            predicted_at = datetime.fromtimestamp(offer.at, UTC)
            for production, request in zip(offer.answers, offer.requests, strict=True):
                ours, theirs = next(shadow)["predictions"], production["predictions"]
                self._metrics.sla_diff.observe(abs(ours["slaRisk"] - theirs["slaRisk"]))
                self._metrics.eta_diff.observe(abs(ours["etaMinutes"] - theirs["etaMinutes"]))
                rows.append(
                    {
                        "id": next(ids),
                        "request_id": request.requestId,
                        "order_id": request.orderId,
                        "predicted_at": predicted_at,
                        "production_version": offer.production_version,
                        "production_sla_risk": theirs["slaRisk"],
                        "production_eta_minutes": theirs["etaMinutes"],
                        "challenger_version": version,
                        "challenger_sla_risk": ours["slaRisk"],
                        "challenger_eta_minutes": ours["etaMinutes"],
                    }
                )
        if self._sink is None:
            return
        if self._sink.write(rows):
            self._metrics.stored.inc(len(rows))
        else:
            self._metrics.errors.labels("store").inc(len(rows))
