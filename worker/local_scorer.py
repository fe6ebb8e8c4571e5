"""Predictions inside the worker's process, for deployments without a facade (`OSML_WORKER_SCORER=in-process`).

The same interface as `worker.facade_client.FacadeClient` and the same code as the facade behind it: the
production pair is followed and loaded by `serving.model_store` (data files only, never a pickle), each item is
validated as a `serving.payloads.PredictRequest` and predicted by `serving.dataplane.predict_with`. An invalid
item is `FacadeRejected` (dead-lettered, as a facade 400 would be); no loaded pair yet is transient. A pair under
the alias `challenger` is scored in the shadow as the facade does (`serving.shadow`), into this worker's database.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from mlflow import MlflowClient
from prometheus_client import REGISTRY
from pydantic import ValidationError

from osml import registry
from osml.conventions import CHALLENGER_ALIAS
from osml.job_store import make_engine
from serving import errors
from serving.dataplane import predict_with
from serving.metrics import ShadowMetrics
from serving.model_store import ModelStore, RegistryLoader
from serving.payloads import PredictRequest
from serving.shadow import ShadowScorer, sink_for
from worker.facade_client import FacadeRejected, Prediction, PredictItem, parse_prediction
from worker.resilience import TransientError


@cache
def _shadow_metrics() -> ShadowMetrics:
    """The worker's shadow series, on the process's default registry (served by worker/metrics.py), once."""
    return ShadowMetrics(REGISTRY)


class InProcessScorer:
    """Follows the registry aliases `production` and `challenger` (polled every `poll_seconds`) and predicts in
    this process; the challenger's rows go to `database_url`'s orders_prediction_shadow."""

    def __init__(
        self, *, tracking_uri: str, poll_seconds: float, database_url: str, shadow_queue_rows: int, explain: int = 0
    ) -> None:
        """`explain` = k > 0: every prediction carries k explanations per model."""
        self._explain = explain or None
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._cache = tempfile.TemporaryDirectory(prefix="osml-worker-models-")
        loader = RegistryLoader(tracking_uri=tracking_uri, cache_dir=Path(self._cache.name))
        self._store = ModelStore(
            read_production=lambda: registry.production_pair(client), load=loader, poll_seconds=poll_seconds
        )
        self._engine = make_engine(database_url, application_name="osml-worker-shadow")
        self.shadow = ShadowScorer(
            read_challenger=lambda: registry.aliased_pair(client, CHALLENGER_ALIAS),
            load=loader,
            poll_seconds=poll_seconds,
            metrics=_shadow_metrics(),
            sink=sink_for(self._engine),
            capacity_rows=shadow_queue_rows,
        )
        self._pollers: list[asyncio.Task[None]] = []

    async def _following(self) -> ModelStore:
        if not self._pollers:
            await asyncio.to_thread(self._store.refresh)
            await asyncio.to_thread(self.shadow.store.refresh)
            await asyncio.to_thread(self.shadow.start)
            self._pollers = [
                asyncio.create_task(self._store.poll_forever(), name="osml-worker-model-poller"),
                asyncio.create_task(self.shadow.store.poll_forever(), name="osml-worker-challenger-poller"),
            ]
        return self._store

    async def aclose(self) -> None:
        for poller in self._pollers:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        if self._pollers:
            await asyncio.to_thread(self.shadow.close)
        self._engine.dispose()
        self._cache.cleanup()

    async def predict(self, item: PredictItem) -> Prediction:
        [prediction] = await self.predict_batch([item])
        return prediction

    async def predict_batch(self, items: Sequence[PredictItem]) -> list[Prediction]:
        """Predictions in the order of `items`; FacadeRejected when any item is invalid."""
        try:
            requests = [PredictRequest.model_validate(item.body()) for item in items]
        except ValidationError as exc:
            raise FacadeRejected(str(exc)) from exc
        pair = (await self._following()).current
        if pair is None:
            raise TransientError("no model pair is loaded yet (none under the alias production, or it failed to load)")
        try:
            version, answers = await asyncio.to_thread(predict_with, pair, requests, explain=self._explain)
        except errors.ExplanationsUnavailable as exc:
            # as the facade's 409: waits for a production pair that can explain
            raise TransientError(str(exc)) from exc
        if self.shadow.store.current is not None:
            self.shadow.offer(version, requests, answers)
        return [parse_prediction(answer, explained=self._explain is not None) for answer in answers]
