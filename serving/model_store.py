"""The active model pair: loaded off the event loop, swapped in one assignment.

The facade follows the registry alias `production`. A poller reads it every `poll_seconds`, or at once when a
registry webhook says it moved (`refresh_soon`); when it names a different pair, that pair is loaded in a worker
thread while the current one keeps answering, its features schema is checked, and only then does `current`
change, in a single attribute assignment. A request reads `current` once and uses that object to the end, so
its `modelVersion` names the pair that produced it.

A pair that fails to load is retried with exponential backoff (one poll, then twice that, up to
`retry_max_seconds`), not downloaded again at every poll; `on_failure` reports each failure (a metric).

With a `gate` (serving/gate.py), a loaded pair replaces the serving one only when it passes the promotion gate
against it. A pair the alias was moved to elsewhere that fails the gate is refused visibly: the current pair keeps
serving, the refusal is logged, reported (`on_decision`, a metric) and kept in `refusals` (GET /models), and the
pair is not compared again until it is activated with force.
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
from typing import TypeVar

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from osml import evaluation_slice, model_files
from osml.predictor import Explainer, OrderPredictor
from osml.registry import ModelPair
from osml.schema import SEED_EXAMPLE_FEATURES, SUPPORTED_SCHEMA_VERSIONS
from serving.errors import ModelLoadFailed, UnsupportedSchema
from serving.gate import Comparison, Decision, Gate, Via

log = logging.getLogger("osml.serving.models")
_T = TypeVar("_T")


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
    """A pair that cannot answer the seed's example, alone and in a batch (and explain it, when its models can
    explain), is never swapped in. The explanation also builds the model's TreeSHAP tables here, off the event
    loop, instead of in the first `?explain` request."""
    try:
        one = model.predict([SEED_EXAMPLE_FEATURES])
        two = model.predict([SEED_EXAMPLE_FEATURES, SEED_EXAMPLE_FEATURES])
        if isinstance(model, Explainer):
            model.explain([SEED_EXAMPLE_FEATURES], 1)
    except Exception as exc:
        raise ModelLoadFailed(f"model version {model_version} fails a smoke prediction: {exc!r}") from exc
    if len(one) != 1 or len(two) != 2 or not all(math.isfinite(float(v)) for v in (*one, *two)):
        raise ModelLoadFailed(f"model version {model_version} answers the smoke prediction with {list(one)!r}")


@dataclass(frozen=True)
class _Verdict:
    gate: Gate
    comparison: Comparison
    decision: Decision


class RegistryLoader:
    """Downloads a pair's models from the registry into `cache_dir` and loads them (blocking).

    The runtime reads a model's files into memory, so each download is deleted once loaded (or refused): the
    cache never holds more than the models being loaded at that moment."""

    def __init__(self, *, tracking_uri: str, cache_dir: Path) -> None:
        self._tracking_uri = tracking_uri
        self._cache_dir = cache_dir
        # resolved through our client: `models:/` URIs would go through MLflow's global registry URI instead
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _artifact(self, version: ModelVersion, name: str, read: Callable[[Path], _T]) -> _T:
        """`read` of one of the model's artifacts, downloaded into the cache and deleted once read."""
        import mlflow.artifacts

        source = self._client.get_model_version_download_uri(version.name, version.version)
        with tempfile.TemporaryDirectory(prefix="model-", dir=self._cache_dir) as destination:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{source.rstrip('/')}/artifacts/{name}",
                dst_path=destination,
                tracking_uri=self._tracking_uri,
            )
            return read(Path(local))

    def _predictor(self, version: ModelVersion) -> OrderPredictor:
        """Only the model's data files are fetched and parsed (`osml.model_files`); its shipped code, MLmodel
        and anything else in the registry are never run or unpickled here."""
        try:
            return self._artifact(version, model_files.ARTIFACT, model_files.load)
        except model_files.ModelFileError as exc:
            raise ModelLoadFailed(f"{version.name} version {version.version} is refused: {exc}") from exc

    def evaluation(self, pair: ModelPair) -> evaluation_slice.EvaluationSlice | None:
        """The pair's evaluation slice (stored with its SLA model), None when it has none or it is unreadable."""
        try:
            return self._artifact(pair.sla, evaluation_slice.ARTIFACT, evaluation_slice.load)
        except (MlflowException, OSError, evaluation_slice.EvaluationSliceError) as exc:
            log.warning(
                "no evaluation slice for the promotion gate",
                extra={"modelVersion": pair.model_version, "error": str(exc)},
            )
            return None

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
        gate: Gate | None = None,
        on_decision: Callable[[Comparison, Decision, Via], None] | None = None,
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
        self._gate = gate
        self._on_decision = on_decision
        self._refused: dict[tuple[str, str, str], Comparison] = {}  # pairs the gate refused on the poll path
        self._wake = asyncio.Event()

    @property
    def refusals(self) -> dict[str, Comparison]:
        """modelVersion -> the comparison that refused the pair the alias names (until it is activated)."""
        return {key[0]: comparison for key, comparison in self._refused.items()}

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
        if key in self._rejected or key in self._refused or (self.current is not None and self.current.key == key):
            return self.current
        if self._failing is not None and self._failing[0] == key and self._clock() < self._failing[2]:
            return self.current  # backing off: this very pair failed a moment ago
        with self._loading:
            if self.current is not None and self.current.key == key:
                return self.current
            try:
                active = self._load(pair)
                verdict = self._judge(pair, active, force=False)
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
            if verdict is not None and verdict.decision == "refused":
                self._refused[key] = verdict.comparison
                self._record(verdict, "poll")
                return self.current
            self._swap(active)
        if verdict is not None:
            self._record(verdict, "poll")
        return active

    def _judge(self, pair: ModelPair, active: ActivePair, *, force: bool) -> _Verdict | None:
        """The gate's verdict on `active` against the serving pair; None without a gate or a pair serving."""
        if self._gate is None or self.current is None or self.current.key == active.key:
            return None
        comparison = self._gate.compare(pair, active, self.current)
        return _Verdict(self._gate, comparison, self._gate.decide(pair, comparison, force=force))

    def _record(self, verdict: _Verdict, via: Via) -> None:
        verdict.gate.record(verdict.comparison, verdict.decision, via=via)
        if self._on_decision is not None:
            self._on_decision(verdict.comparison, verdict.decision, via)

    def _back_off(self, key: tuple[str, str, str], model_version: str) -> float:
        failures = self._failing[1] + 1 if self._failing is not None and self._failing[0] == key else 1
        delay = min(self._poll_seconds * 2 ** (failures - 1), self._retry_max_seconds)
        self._failing = (key, failures, self._clock() + delay)
        if self._on_failure is not None:
            self._on_failure(model_version)
        return delay

    def promote(
        self, pair: ModelPair, *, commit: Callable[[], object], force: bool = False, via: Via = "activate"
    ) -> ActivePair:
        """Load `pair`, pass the gate, then `commit` (point the registry alias at it), then swap (blocking).

        Loading first means a pair that cannot be served is never made production; a pair the gate refuses raises
        GateRefused (with both pairs' figures) unless `force`, which is recorded on the pair before `commit`.
        """
        check_schema(pair)
        with self._loading:
            active = self._load(pair)
            verdict = self._judge(pair, active, force=force)
            if verdict is not None and verdict.decision == "refused":
                self._record(verdict, via)
                raise verdict.gate.refusal(verdict.comparison)
            if verdict is not None and verdict.decision == "forced":
                verdict.gate.mark_forced(pair, verdict.comparison)
            commit()
            self._rejected.discard(active.key)
            self._refused.pop(active.key, None)
            self._failing = None
            self._swap(active)
        if verdict is not None:
            self._record(verdict, via)
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
