"""The active model pair: loaded off the event loop, swapped in one assignment.

The facade follows the registry alias `production`. A poller reads it every `poll_seconds`, or at once when a
registry webhook says it moved (`refresh_soon`); when it names a different pair, that pair is loaded in a worker
thread while the current one keeps answering, its features schema is checked, and only then does `current`
change, in a single attribute assignment. A request reads `current` once and uses that object to the end, so
its `modelVersion` names the pair that produced it.

A pair that fails to load is retried with exponential backoff (one poll, then twice that, up to
`retry_max_seconds`), not downloaded again at every poll; `on_failure` reports each failure (a metric).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from osml import model_files
from osml.predictor import OrderPredictor
from osml.registry import ModelPair
from osml.schema import SEED_EXAMPLE_FEATURES, SUPPORTED_SCHEMA_VERSIONS
from serving.errors import ModelLoadFailed, UnsupportedSchema

log = logging.getLogger("osml.serving.models")


@dataclass(frozen=True)
class ActivePair:
    """A loaded pair: both predictors plus what the responses and /models report about them."""

    model_version: str
    schema_version: str
    trained_at: str
    sla: OrderPredictor
    eta: OrderPredictor
    key: tuple[str, str, str]  # (modelVersion, sla registry version, eta registry version)


def pair_key(pair: ModelPair) -> tuple[str, str, str]:
    return (pair.model_version, str(pair.sla.version), str(pair.eta.version))


def check_schema(pair: ModelPair) -> None:
    if pair.schema_version not in SUPPORTED_SCHEMA_VERSIONS:
        raise UnsupportedSchema(
            f"model version {pair.model_version} uses features schema {pair.schema_version or '(none)'!r}; "
            f"this facade serves schemas {sorted(SUPPORTED_SCHEMA_VERSIONS)}"
        )


def smoke_test(model: OrderPredictor, model_version: str) -> None:
    """A pair that cannot answer the seed's example, alone and in a batch, is never swapped in."""
    try:
        one = model.predict([SEED_EXAMPLE_FEATURES])
        two = model.predict([SEED_EXAMPLE_FEATURES, SEED_EXAMPLE_FEATURES])
    except Exception as exc:
        raise ModelLoadFailed(f"model version {model_version} fails a smoke prediction: {exc!r}") from exc
    if len(one) != 1 or len(two) != 2 or not all(math.isfinite(float(v)) for v in (*one, *two)):
        raise ModelLoadFailed(f"model version {model_version} answers the smoke prediction with {list(one)!r}")


class RegistryLoader:
    """Downloads a pair's models from the registry into `cache_dir` and loads them (blocking).

    The runtime reads a model's files into memory, so each download is deleted once loaded (or refused): the
    cache never holds more than the models being loaded at that moment."""

    def __init__(self, *, tracking_uri: str, cache_dir: Path) -> None:
        self._tracking_uri = tracking_uri
        self._cache_dir = cache_dir
        # resolved through our client: `models:/` URIs would go through MLflow's global registry URI instead
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _predictor(self, version: ModelVersion) -> OrderPredictor:
        """Only the model's data files are fetched and parsed (`osml.model_files`); its shipped code, MLmodel
        and anything else in the registry are never run or unpickled here."""
        import mlflow.artifacts

        source = self._client.get_model_version_download_uri(version.name, version.version)
        with tempfile.TemporaryDirectory(prefix="model-", dir=self._cache_dir) as destination:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{source.rstrip('/')}/artifacts/{model_files.ARTIFACT}",
                dst_path=destination,
                tracking_uri=self._tracking_uri,
            )
            try:
                return model_files.load(Path(local))
            except model_files.ModelFileError as exc:
                raise ModelLoadFailed(f"{version.name} version {version.version} is refused: {exc}") from exc

    def __call__(self, pair: ModelPair) -> ActivePair:
        check_schema(pair)
        try:
            sla, eta = self._predictor(pair.sla), self._predictor(pair.eta)
        except ModelLoadFailed:
            raise
        except Exception as exc:
            raise ModelLoadFailed(f"could not load model version {pair.model_version}: {exc}") from exc
        for model in (sla, eta):
            if model.schema_version != pair.schema_version:
                raise UnsupportedSchema(
                    f"model version {pair.model_version} is tagged with features schema {pair.schema_version!r} "
                    f"but its model expects {model.schema_version!r}"
                )
            smoke_test(model, pair.model_version)
        return ActivePair(pair.model_version, pair.schema_version, pair.trained_at, sla, eta, pair_key(pair))


class ModelStore:
    """Holds the active pair; `refresh` follows the registry, `promote` switches on request."""

    def __init__(
        self,
        *,
        read_production: Callable[[], ModelPair | None],
        load: Callable[[ModelPair], ActivePair],
        poll_seconds: float,
        retry_max_seconds: float = 300.0,
        on_swap: Callable[[ActivePair], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.current: ActivePair | None = None
        self._read_production = read_production
        self._load = load
        self._poll_seconds = poll_seconds
        self._on_swap = on_swap
        self._on_failure = on_failure
        self._retry_max_seconds = retry_max_seconds
        self._clock = clock
        # the pair whose load failed last: (its key, failures in a row, when it may be tried again)
        self._failing: tuple[tuple[str, str, str], int, float] | None = None
        self._loading = threading.Lock()  # serialises loaders only; requests never take it
        self._rejected: set[tuple[str, str, str]] = set()
        self._wake = asyncio.Event()

    def _swap(self, active: ActivePair) -> None:
        previous = self.current
        self.current = active  # the one step requests can observe
        if self._on_swap is not None:
            self._on_swap(active)
        log.info(
            "model pair swapped in",
            extra={"modelVersion": active.model_version, "previous": previous.model_version if previous else None},
        )

    def refresh(self) -> ActivePair | None:
        """Follow the alias `production` (blocking). Any failure leaves the current pair serving."""
        try:
            pair = self._read_production()
        except Exception as exc:
            log.warning("registry unreachable; keeping the current pair", extra={"error": str(exc)})
            return self.current
        if pair is None:
            return self.current
        key = pair_key(pair)
        if key in self._rejected or (self.current is not None and self.current.key == key):
            return self.current
        if self._failing is not None and self._failing[0] == key and self._clock() < self._failing[2]:
            return self.current  # backing off: this very pair failed a moment ago
        with self._loading:
            if self.current is not None and self.current.key == key:
                return self.current
            try:
                active = self._load(pair)
            except UnsupportedSchema as exc:
                self._rejected.add(key)
                log.error("production pair refused", extra={"modelVersion": pair.model_version, "error": str(exc)})
                return self.current
            except Exception as exc:
                delay = self._back_off(key, pair.model_version)
                log.error(
                    "production pair failed to load",
                    extra={"modelVersion": pair.model_version, "error": str(exc), "retryInSeconds": delay},
                )
                return self.current
            self._failing = None
            self._swap(active)
        return active

    def _back_off(self, key: tuple[str, str, str], model_version: str) -> float:
        failures = self._failing[1] + 1 if self._failing is not None and self._failing[0] == key else 1
        delay = min(self._poll_seconds * 2 ** (failures - 1), self._retry_max_seconds)
        self._failing = (key, failures, self._clock() + delay)
        if self._on_failure is not None:
            self._on_failure(model_version)
        return delay

    def promote(self, pair: ModelPair, *, commit: Callable[[], object]) -> ActivePair:
        """Load `pair`, then `commit` (point the registry alias at it), then swap (blocking).

        Loading first means a pair that cannot be served is never made production.
        """
        check_schema(pair)
        with self._loading:
            active = self._load(pair)
            commit()
            self._rejected.discard(active.key)
            self._failing = None
            self._swap(active)
        return active

    def refresh_soon(self) -> None:
        """Read the alias now rather than at the next poll (a registry webhook said it moved). Loop thread only."""
        self._wake.set()

    async def poll_forever(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that lands as the event fires
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_seconds):
                    await self._wake.wait()
            self._wake.clear()  # before reading: an event arriving during the read triggers one more
            await asyncio.to_thread(self.refresh)
