"""Predictions inside the worker's process, for deployments without a facade (`OSML_WORKER_SCORER=in-process`).

The same interface as `worker.facade_client.FacadeClient` and the same code as the facade behind it: the
production pair is followed and loaded by `serving.model_store` (data files only, never a pickle), each item is
validated as a `serving.payloads.PredictRequest` and predicted by `serving.dataplane.predict_with`. An invalid
item is `FacadeRejected` (dead-lettered, as a facade 400 would be); no loaded pair yet is transient.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mlflow import MlflowClient
from pydantic import ValidationError

from osml import registry
from serving.dataplane import predict_with
from serving.model_store import ModelStore, RegistryLoader
from serving.payloads import PredictRequest
from worker.facade_client import FacadeRejected, Prediction, PredictItem
from worker.resilience import TransientError


class InProcessScorer:
    """Follows the registry alias `production` (polled every `poll_seconds`) and predicts in this process."""

    def __init__(self, *, tracking_uri: str, poll_seconds: float) -> None:
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._cache = tempfile.TemporaryDirectory(prefix="osml-worker-models-")
        self._store = ModelStore(
            read_production=lambda: registry.production_pair(client),
            load=RegistryLoader(tracking_uri=tracking_uri, cache_dir=Path(self._cache.name)),
            poll_seconds=poll_seconds,
        )
        self._poller: asyncio.Task[None] | None = None

    async def _following(self) -> ModelStore:
        if self._poller is None:
            await asyncio.to_thread(self._store.refresh)
            self._poller = asyncio.create_task(self._store.poll_forever(), name="osml-worker-model-poller")
        return self._store

    async def aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
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
        _, answers = await asyncio.to_thread(predict_with, pair, requests)
        return [
            Prediction(
                model_version=answer["modelVersion"],
                sla_risk=float(answer["predictions"]["slaRisk"]),
                eta_minutes=float(answer["predictions"]["etaMinutes"]),
            )
            for answer in answers
        ]
