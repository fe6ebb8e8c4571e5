"""Swap logic: the registry alias decides, loads happen beside serving, the switch is one step."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import numpy as np
import pytest
from mlflow.entities.model_registry import ModelVersion, ModelVersionTag
from mlflow.exceptions import MlflowException

from osml.conventions import ETA_MODEL_NAME, SLA_MODEL_NAME
from osml.registry import ModelPair
from serving.errors import ModelLoadFailed, UnsupportedSchema
from serving.model_store import ActivePair, ModelStore, check_schema, smoke_test
from tests.unit.serving.conftest import active_pair

pytestmark = pytest.mark.unit


def pair(model_version: str, *, registry_version: int = 1, schema: str = "2") -> ModelPair:
    tags = [
        ModelVersionTag("modelVersion", model_version),
        ModelVersionTag("featuresSchemaVersion", schema),
        ModelVersionTag("trainedAt", "2026-05-01T10:00:00Z"),
    ]
    return ModelPair(
        model_version,
        ModelVersion(SLA_MODEL_NAME, str(registry_version), 0, tags=tags),
        ModelVersion(ETA_MODEL_NAME, str(registry_version), 0, tags=tags),
    )


class Registry:
    """What the alias `production` points at, as the store's poller sees it."""

    def __init__(self) -> None:
        self.production: ModelPair | None = None
        self.down = False

    def read(self) -> ModelPair | None:
        if self.down:
            raise MlflowException("API request to http://mlflow failed: Connection refused")
        return self.production


class Loader:
    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.failing: set[str] = set()
        self.gate: threading.Event | None = None
        self.started = threading.Event()

    def __call__(self, p: ModelPair) -> ActivePair:
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(timeout=10)
        if p.model_version in self.failing:
            raise ModelLoadFailed(f"artifact store unreachable for {p.model_version}")
        self.loaded.append(p.model_version)
        check_schema(p)
        loaded = active_pair(p.model_version)
        return ActivePair(
            loaded.model_version,
            loaded.schema_version,
            loaded.trained_at,
            loaded.sla,
            loaded.eta,
            (p.model_version, str(p.sla.version), str(p.eta.version)),
        )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def loader() -> Loader:
    return Loader()


@pytest.fixture
def store(registry: Registry, loader: Loader) -> ModelStore:
    return ModelStore(read_production=registry.read, load=loader, poll_seconds=1)


def served(store: ModelStore) -> str | None:
    return store.current.model_version if store.current else None


def test_follows_the_alias_and_loads_each_pair_once(store: ModelStore, registry: Registry, loader: Loader) -> None:
    assert store.refresh() is None
    registry.production = pair("2026-05-01_001")
    store.refresh()
    store.refresh()
    assert served(store) == "2026-05-01_001"
    registry.production = pair("2026-05-02_001", registry_version=2)
    store.refresh()
    assert served(store) == "2026-05-02_001"
    assert loader.loaded == ["2026-05-01_001", "2026-05-02_001"]


def test_a_re_registered_version_with_the_same_tag_is_reloaded(
    store: ModelStore, registry: Registry, loader: Loader
) -> None:
    registry.production = pair("2026-05-01_001", registry_version=1)
    store.refresh()
    registry.production = pair("2026-05-01_001", registry_version=3)
    store.refresh()
    assert store.current is not None and store.current.key == ("2026-05-01_001", "3", "3")
    assert len(loader.loaded) == 2


def test_registry_down_keeps_the_current_pair(store: ModelStore, registry: Registry) -> None:
    registry.production = pair("2026-05-01_001")
    store.refresh()
    registry.down = True
    assert store.refresh() is store.current
    assert served(store) == "2026-05-01_001"


def test_a_registry_down_at_boot_is_served_at_the_first_poll_after_it_returns(
    store: ModelStore, registry: Registry, loader: Loader
) -> None:
    registry.production, registry.down = pair("2026-05-01_001"), True
    for _ in range(3):  # polls while the tracking server is down: nothing served, nothing loaded
        assert store.refresh() is None
    assert loader.loaded == []
    registry.down = False
    store.refresh()  # the first poll after it is back
    assert served(store) == "2026-05-01_001"


def test_an_unsupported_schema_is_refused_once_and_the_current_pair_stays(
    store: ModelStore, registry: Registry, loader: Loader
) -> None:
    registry.production = pair("2026-05-01_001")
    store.refresh()
    registry.production = pair("2026-05-02_001", registry_version=2, schema="99")
    store.refresh()
    store.refresh()
    assert served(store) == "2026-05-01_001"
    assert loader.loaded == ["2026-05-01_001", "2026-05-02_001"]  # tried once, then remembered


def test_a_failed_load_keeps_the_current_pair_and_is_retried_after_a_poll(registry: Registry, loader: Loader) -> None:
    clock = Clock()
    store = ModelStore(read_production=registry.read, load=loader, poll_seconds=5, clock=clock)
    registry.production = pair("2026-05-01_001")
    store.refresh()
    registry.production = pair("2026-05-02_001", registry_version=2)
    loader.failing.add("2026-05-02_001")
    store.refresh()
    assert served(store) == "2026-05-01_001"
    loader.failing.clear()
    store.refresh()
    assert served(store) == "2026-05-01_001"  # within the backoff: not downloaded again
    clock.now += 5
    store.refresh()
    assert served(store) == "2026-05-02_001"


def test_readers_keep_the_old_pair_while_the_new_one_loads(
    store: ModelStore, registry: Registry, loader: Loader
) -> None:
    registry.production = pair("2026-05-01_001")
    store.refresh()
    old = store.current
    registry.production = pair("2026-05-02_001", registry_version=2)
    loader.gate = threading.Event()
    loader.started.clear()
    poller = threading.Thread(target=store.refresh)
    poller.start()
    assert loader.started.wait(timeout=10)
    assert store.current is old  # the load is in progress; requests are answered by the old pair
    loader.gate.set()
    poller.join(timeout=10)
    assert served(store) == "2026-05-02_001"


def test_promote_loads_before_committing(store: ModelStore, loader: Loader) -> None:
    commits: list[str] = []
    loader.failing.add("2026-05-02_001")
    with pytest.raises(ModelLoadFailed):
        store.promote(pair("2026-05-02_001"), commit=lambda: commits.append("2026-05-02_001"))
    assert commits == [] and store.current is None
    store.promote(pair("2026-05-03_001"), commit=lambda: commits.append("2026-05-03_001"))
    assert commits == ["2026-05-03_001"] and served(store) == "2026-05-03_001"


def test_promote_refuses_an_unsupported_schema_without_loading(store: ModelStore, loader: Loader) -> None:
    with pytest.raises(UnsupportedSchema, match="schema '0'"):
        store.promote(pair("2026-05-02_001", schema="0"), commit=lambda: None)
    assert loader.loaded == []


def test_swaps_report_the_new_version(registry: Registry, loader: Loader) -> None:
    swapped: list[str] = []
    store = ModelStore(
        read_production=registry.read, load=loader, poll_seconds=1, on_swap=lambda a: swapped.append(a.model_version)
    )
    registry.production = pair("2026-05-01_001")
    store.refresh()
    assert swapped == ["2026-05-01_001"]


class NaNPredictor:
    schema_version = "2"

    def predict(self, rows: list[object]) -> np.ndarray:
        return np.full(len(rows), np.nan)


def test_a_model_that_cannot_predict_is_refused_at_load() -> None:
    from tests.unit.serving.test_errors import BrokenPredictor

    smoke_test(active_pair("2026-05-01_001").sla, "2026-05-01_001")  # a working model passes
    with pytest.raises(ModelLoadFailed, match="smoke prediction"):
        smoke_test(BrokenPredictor(), "2026-05-01_002")
    with pytest.raises(ModelLoadFailed, match="nan"):
        smoke_test(NaNPredictor(), "2026-05-01_003")  # type: ignore[arg-type]


class UnexplainablePredictor:
    """Predicts, but its explanations fail."""

    schema_version = "2"

    def predict(self, rows: list[object]) -> np.ndarray:
        return np.full(len(rows), 0.5)

    def explain(self, rows: list[object], k: int) -> list[dict[str, object]]:
        raise ValueError("no trees to explain")


def test_a_model_whose_explanations_fail_is_refused_at_load() -> None:
    with pytest.raises(ModelLoadFailed, match="no trees to explain"):
        smoke_test(UnexplainablePredictor(), "2026-05-01_004")  # type: ignore[arg-type]


async def test_refresh_soon_reads_the_alias_without_waiting_for_the_poll(registry: Registry, loader: Loader) -> None:
    store = ModelStore(read_production=registry.read, load=loader, poll_seconds=3600)
    poller = asyncio.create_task(store.poll_forever())
    try:
        registry.production = pair("2026-05-01_001")
        store.refresh_soon()
        deadline = time.monotonic() + 10
        while served(store) != "2026-05-01_001":
            assert time.monotonic() < deadline, "the poller did not wake up"
            await asyncio.sleep(0.01)  # yields to the poller; the deadline bounds the wait
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller


def test_a_failing_pair_is_retried_with_exponential_backoff_up_to_the_cap(registry: Registry, loader: Loader) -> None:
    clock, failures = Clock(), []
    store = ModelStore(
        read_production=registry.read,
        load=loader,
        poll_seconds=5,
        retry_max_seconds=20,
        on_failure=failures.append,
        clock=clock,
    )
    registry.production = pair("2026-05-01_001")
    loader.failing.add("2026-05-01_001")
    attempts_at = []
    for _ in range(60):  # one poll every 5 s for 5 minutes
        before = len(failures)
        store.refresh()
        if len(failures) > before:
            attempts_at.append(clock.now - 1000)
        clock.now += 5
    assert attempts_at[:5] == [0, 5, 15, 35, 55]  # waits of 5, 10, 20, then the 20 s cap
    assert len(attempts_at) == 17  # 0, 5, 15, then every 20 s to 295
    assert failures == ["2026-05-01_001"] * 17

    loader.failing.clear()  # the artifact store is back: the next attempt within the cap serves it
    clock.now += 20
    store.refresh()
    assert served(store) == "2026-05-01_001"


def test_a_new_production_pair_is_tried_at_once_despite_a_failing_one(registry: Registry, loader: Loader) -> None:
    clock = Clock()
    store = ModelStore(read_production=registry.read, load=loader, poll_seconds=5, clock=clock)
    registry.production = pair("2026-05-01_001")
    loader.failing.add("2026-05-01_001")
    store.refresh()
    registry.production = pair("2026-05-02_001", registry_version=2)
    store.refresh()
    assert served(store) == "2026-05-02_001"
