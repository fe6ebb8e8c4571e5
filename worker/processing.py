"""The worker's core, free of any transport: a batch of REQUESTED bodies in, one outcome per body out.

Invalid bodies, requests the facade rejects, answers that stay malformed and rows the database refuses become
dead letters; everything else is predicted with one /predict/batch call and stored with its READY event in one
transaction. Transient failures are retried here until they pass (or shutdown is requested), so the caller acks
only what is settled. A refused API key (FacadeAuthRejected) propagates: the worker stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from worker.events import InvalidEvent, PredictionRequested, parse_requested, ready_for
from worker.facade_client import FacadeMalformed, FacadeRejected, Prediction, PredictItem
from worker.resilience import Backoff, retry_transient
from worker.scoring import Scorer
from worker.store import PredictionRecord, PredictionStore, StoreRejected, eta_whole_minutes, sla_risk_4dp
from worker.topology import READY_KEY

log = logging.getLogger(__name__)

# concurrent single /predict calls when a batch was rejected and the culprits must be found
_ISOLATION_CONCURRENCY = 16
# a facade answering 200 with a body that is not a prediction is asked this many times in all, then the event is
# dead-lettered (a bug, not an outage: waiting for it would stall the queue)
MALFORMED_ATTEMPTS = 3


@dataclass(frozen=True)
class Stored:
    event_id: str
    new: bool  # False: a redelivery of an event stored before (nothing written)


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    detail: str
    event_id: str | None = None
    order_id: str | None = None


Outcome = Stored | DeadLetter


class BatchProcessor:
    def __init__(
        self,
        *,
        facade: Scorer,
        store: PredictionStore,
        backoff: Backoff,
        stop: asyncio.Event | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._facade = facade
        self._store = store
        self._backoff = backoff
        self._stop = stop
        self._clock = clock

    async def process(self, bodies: Sequence[bytes]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(bodies)
        firsts: dict[str, int] = {}  # lowercased eventId -> index of its first copy in this batch
        events: dict[int, PredictionRequested] = {}
        for index, body in enumerate(bodies):
            try:
                event = parse_requested(body)
            except InvalidEvent as exc:
                outcomes[index] = DeadLetter(reason=exc.reason, detail=exc.detail)
                continue
            key = event.eventId.lower()
            if key in firsts:
                outcomes[index] = Stored(event_id=event.eventId, new=False)
            else:
                firsts[key] = index
                events[index] = event

        predicted = await self._predict(events)
        records: list[PredictionRecord] = []
        at = self._clock()
        for index, result in predicted.items():
            event = events[index]
            if isinstance(result, DeadLetter):
                outcomes[index] = result
                continue
            records.append(_record(event, result, at))

        new, refused = await self._save(records)
        for key, letter in refused.items():
            outcomes[firsts[key]] = letter
        records = [r for r in records if r.event_id.lower() not in refused]
        entries = []
        for record in records:
            is_new = record.event_id.lower() in new
            outcomes[firsts[record.event_id.lower()]] = Stored(event_id=record.event_id, new=is_new)
            entries.append(
                {
                    "eventId": record.event_id,
                    "orderId": record.order_id,
                    "modelVersion": record.model_version,
                    "slaRisk": float(record.sla_risk),
                    "etaMinutes": record.eta_minutes,
                    "duplicate": not is_new,
                }
            )
        if entries:
            # one line per batch (a line per event costs a write each at hundreds of events per second)
            log.info(
                "predictions stored",
                extra={
                    "count": len(new),
                    "duplicates": len(entries) - len(new),
                    "modelVersion": sorted({r.model_version for r in records}),
                    "events": entries,
                },
            )
        assert all(o is not None for o in outcomes)
        return [o for o in outcomes if o is not None]

    async def _predict(self, events: dict[int, PredictionRequested]) -> dict[int, Prediction | DeadLetter]:
        if not events:
            return {}
        items = [_item(e) for e in events.values()]
        try:
            answers = await retry_transient(
                lambda: self._facade.predict_batch(items),
                backoff=self._backoff,
                what="/predict/batch",
                stop=self._stop,
            )
            return dict(zip(events, answers, strict=True))
        except (FacadeRejected, FacadeMalformed):
            # at least one item is invalid, or its answer is: ask for each alone to find which
            gate = asyncio.Semaphore(_ISOLATION_CONCURRENCY)
            results = await asyncio.gather(*(self._predict_one(e, gate) for e in events.values()))
            return dict(zip(events, results, strict=True))

    async def _predict_one(self, event: PredictionRequested, gate: asyncio.Semaphore) -> Prediction | DeadLetter:
        item = _item(event)
        async with gate:
            try:
                return await retry_transient(
                    lambda: retry_transient(
                        lambda: self._facade.predict(item), backoff=self._backoff, what="/predict", stop=self._stop
                    ),
                    backoff=self._backoff,
                    what="/predict malformed answer",
                    stop=self._stop,
                    on=(FacadeMalformed,),
                    attempts=MALFORMED_ATTEMPTS,
                )
            except FacadeRejected as exc:
                return DeadLetter("invalid_features", exc.detail, event_id=event.eventId, order_id=event.orderId)
            except FacadeMalformed as exc:
                return DeadLetter("malformed_answer", exc.detail, event_id=event.eventId, order_id=event.orderId)

    async def _save(self, records: list[PredictionRecord]) -> tuple[set[str], dict[str, DeadLetter]]:
        """Store `records`: the lowercased event ids that were new, and a dead letter per record the database
        refuses (found by halving the batch until the refused rows stand alone)."""
        try:
            new = await retry_transient(
                lambda: self._store.save(records, routing_key=READY_KEY),
                backoff=self._backoff,
                what="store predictions",
                stop=self._stop,
            )
            return new, {}
        except StoreRejected as exc:
            if len(records) == 1:
                record = records[0]
                letter = DeadLetter("database_rejected", exc.detail, event_id=record.event_id, order_id=record.order_id)
                return set(), {record.event_id.lower(): letter}
        middle = len(records) // 2
        new_first, refused_first = await self._save(records[:middle])
        new_rest, refused_rest = await self._save(records[middle:])
        return new_first | new_rest, refused_first | refused_rest


def _item(event: PredictionRequested) -> PredictItem:
    return PredictItem(request_id=event.eventId, order_id=event.orderId, features=event.data.features)


def _record(event: PredictionRequested, prediction: Prediction, at: datetime) -> PredictionRecord:
    sla_risk = sla_risk_4dp(prediction.sla_risk)
    eta_minutes = eta_whole_minutes(prediction.eta_minutes)
    return PredictionRecord(
        event_id=event.eventId,
        order_id=event.orderId,
        model_version=prediction.model_version,
        sla_risk=sla_risk,
        eta_minutes=eta_minutes,
        predicted_at=at,
        features=event.data.features,
        explanations=prediction.explanations,
        ready=ready_for(
            event, model_version=prediction.model_version, sla_risk=float(sla_risk), eta_minutes=eta_minutes, at=at
        ),
    )
