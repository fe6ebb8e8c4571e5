"""The shadow challenger through the facade: the pair under `challenger` is scored beside production, its rows
stored with production's answer (PostgreSQL; the embedded SQLite keeps metrics only), and it never changes nor
holds up a /predict answer."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, inspect, select

from osml.processes import wait_until
from osml.schema import SEED_EXAMPLE_FEATURES
from serving.app import create_app
from serving.dataplane import predict_with
from serving.model_store import ActivePair
from serving.payloads import PredictRequest
from serving.settings import ServingSettings
from serving.shadow import shadow_predictions
from tests.services import fresh_database
from tests.unit.serving.conftest import PREDICT_KEY, ArithmeticPredictor, active_pair
from worker.migrate import sqlalchemy_url, upgrade

pytestmark = pytest.mark.unit

PRODUCTION, CHALLENGER = "2026-05-01_001", "2026-05-01_002"
HEADERS = {"X-API-Key": PREDICT_KEY}


def _items(count: int) -> list[dict[str, Any]]:
    priorities = ["LOW", "MEDIUM", "HIGH", "CRITICAL"]
    return [
        {
            "requestId": f"r{i}",
            "orderId": f"order-{i}",
            "features": {**SEED_EXAMPLE_FEATURES, "priority": priorities[i % 4], "dueInMinutes": 30 * i},
        }
        for i in range(count)
    ]


def _challenger() -> ActivePair:
    return active_pair(CHALLENGER, sla_base=0.2, eta_base=90.0)


def _samples(application: FastAPI) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(application.state.metrics.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _stored(database_url: str) -> list[Mapping[str, Any]]:
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(shadow_predictions).order_by(shadow_predictions.c.order_id)).mappings())
    finally:
        engine.dispose()


@pytest.fixture
def database_url() -> Iterator[str]:
    """The facade's database: a PostgreSQL one, migrated (the table is the worker's migration's)."""
    with fresh_database("osml_shadow") as url:
        upgrade(url)
        yield url


@pytest.fixture
async def shadow_app(settings: ServingSettings, database_url: str) -> AsyncIterator[FastAPI]:
    application = create_app(settings.model_copy(update={"database_url": database_url, "shadow_flush_seconds": 0.05}))
    async with application.router.lifespan_context(application):
        application.state.plane.store.current = active_pair(PRODUCTION)
        yield application


@pytest.fixture
async def shadow_client(shadow_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=shadow_app), base_url="http://facade") as c:
        yield c


async def test_answers_are_byte_for_byte_the_same_with_a_challenger_loaded(
    app: FastAPI, client: httpx.AsyncClient, loaded: ActivePair
) -> None:
    item, batch = _items(1)[0], {"items": _items(5)}

    async def answers() -> tuple[bytes, bytes]:
        one = await client.post("/predict", json=item, headers=HEADERS)
        many = await client.post("/predict/batch", json=batch, headers=HEADERS)
        assert one.status_code == many.status_code == 200
        return one.content, many.content

    without = await answers()
    app.state.plane.shadow.store.current = _challenger()
    with_challenger = await answers()
    assert with_challenger == without
    assert b"2026-05-01_002" not in with_challenger[0] + with_challenger[1]


async def test_the_challenger_scores_the_same_orders_and_its_rows_are_stored_beside_production(
    shadow_app: FastAPI, shadow_client: httpx.AsyncClient, database_url: str
) -> None:
    challenger = _challenger()
    shadow_app.state.plane.shadow.store.current = challenger
    items = _items(7)
    single = await shadow_client.post("/predict", json=items[0], headers=HEADERS)
    batch = await shadow_client.post("/predict/batch", json={"items": items[1:]}, headers=HEADERS)
    served = {a["orderId"]: a for a in [single.json(), *batch.json()["items"]]}

    rows = wait_until(lambda: len(found := _stored(database_url)) == 7 and found, timeout=30, what="7 shadow rows")
    _, expected = predict_with(challenger, [PredictRequest.model_validate(i) for i in items])
    by_order = {a["orderId"]: a["predictions"] for a in expected}
    assert sorted(r["order_id"] for r in rows) == sorted(served)
    for row in rows:
        production = served[row["order_id"]]
        assert (row["request_id"], row["production_version"]) == (production["requestId"], PRODUCTION)
        assert float(row["production_sla_risk"]) == pytest.approx(production["predictions"]["slaRisk"], abs=1e-9)
        assert row["production_eta_minutes"] == production["predictions"]["etaMinutes"]
        assert row["challenger_version"] == CHALLENGER
        assert float(row["challenger_sla_risk"]) == pytest.approx(by_order[row["order_id"]]["slaRisk"], abs=1e-9)
        assert row["challenger_eta_minutes"] == by_order[row["order_id"]]["etaMinutes"]
        assert row["challenger_sla_risk"] != row["production_sla_risk"]  # two models, two answers

    samples = _samples(shadow_app)
    assert samples["osml_shadow_predictions_total", frozenset({("model_version", CHALLENGER)})] == 7
    assert samples["osml_shadow_stored_total", frozenset()] == 7
    assert samples["osml_shadow_sla_risk_abs_diff_count", frozenset()] == 7


class _Blocking(ArithmeticPredictor):
    """A challenger model that holds the shadow thread inside `predict` until released."""

    def __init__(self, base: float) -> None:
        super().__init__(base)
        self.entered, self.release = threading.Event(), threading.Event()

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        self.entered.set()
        self.release.wait(30)
        return super().predict(rows)


async def test_a_stuck_challenger_never_holds_up_predict_its_overflow_is_dropped_and_counted(
    settings: ServingSettings,
) -> None:
    application = create_app(settings.model_copy(update={"shadow_queue_rows": 4, "shadow_flush_seconds": 0.01}))
    slow = _Blocking(0.2)
    async with application.router.lifespan_context(application):
        plane = application.state.plane
        plane.store.current = active_pair(PRODUCTION)
        plane.shadow.store.current = ActivePair(
            CHALLENGER, "2", "2026-05-01T10:00:00Z", slow, slow, (CHALLENGER, "2", "2")
        )
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://f") as client:
            items = _items(8)
            first = await client.post("/predict", json=items[0], headers=HEADERS)
            wait_until(slow.entered.is_set, timeout=30, what="the challenger busy with the first row")
            # the shadow thread is stuck: 4 rows fill its queue, the other 3 are dropped, all 8 are answered
            answers = [first] + [await client.post("/predict", json=i, headers=HEADERS) for i in items[1:]]
            assert [a.status_code for a in answers] == [200] * 8
            assert {a.json()["modelVersion"] for a in answers} == {PRODUCTION}
            samples = _samples(application)
            assert samples["osml_shadow_dropped_total", frozenset()] == 3
            assert samples["osml_shadow_queue_rows", frozenset()] == 4
            slow.release.set()
            scored = ("osml_shadow_predictions_total", frozenset({("model_version", CHALLENGER)}))
            assert wait_until(lambda: _samples(application).get(scored) == 5, timeout=30, what="5 rows scored")


async def test_without_a_challenger_nothing_is_scored_or_stored(settings: ServingSettings, database_url: str) -> None:
    application = create_app(settings.model_copy(update={"database_url": database_url, "shadow_flush_seconds": 0.01}))
    async with application.router.lifespan_context(application):
        application.state.plane.store.current = active_pair(PRODUCTION)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://f") as client:
            batch = await client.post("/predict/batch", json={"items": _items(5)}, headers=HEADERS)
            assert batch.status_code == 200
    # the lifespan's end scored and stored whatever was queued: nothing was
    samples = _samples(application)
    assert not any(name == "osml_shadow_predictions_total" for name, _ in samples)
    assert samples["osml_shadow_stored_total", frozenset()] == 0
    assert _stored(database_url) == []


async def test_on_the_embedded_sqlite_database_the_challenger_is_scored_but_no_row_is_stored(
    app: FastAPI, client: httpx.AsyncClient, loaded: ActivePair, settings: ServingSettings
) -> None:
    app.state.plane.shadow.store.current = _challenger()
    assert (await client.post("/predict/batch", json={"items": _items(4)}, headers=HEADERS)).status_code == 200
    scored = ("osml_shadow_predictions_total", frozenset({("model_version", CHALLENGER)}))
    wait_until(lambda: _samples(app).get(scored) == 4, timeout=30, what="4 rows scored")
    samples = _samples(app)
    assert samples["osml_shadow_sla_risk_abs_diff_count", frozenset()] == 4
    assert samples["osml_shadow_stored_total", frozenset()] == 0
    assert not any(name == "osml_shadow_errors_total" for name, _ in samples)  # by design, not a failure
    engine = create_engine(settings.database_url)
    assert "orders_prediction_shadow" not in inspect(engine).get_table_names()
    engine.dispose()


async def test_a_challenger_that_is_production_itself_is_not_scored_again(
    app: FastAPI, client: httpx.AsyncClient, loaded: ActivePair
) -> None:
    app.state.plane.shadow.store.current = loaded
    assert (await client.post("/predict/batch", json={"items": _items(3)}, headers=HEADERS)).status_code == 200
    assert _samples(app)["osml_shadow_queue_rows", frozenset()] == 0


async def test_without_the_table_the_shadow_keeps_its_metrics_and_counts_the_rows_it_could_not_store(
    settings: ServingSettings, caplog: pytest.LogCaptureFixture
) -> None:
    with fresh_database("osml_shadow_unmigrated") as url:  # PostgreSQL: the table is the migration's, not made here
        application = create_app(settings.model_copy(update={"database_url": url, "shadow_flush_seconds": 0.01}))
        async with application.router.lifespan_context(application):
            application.state.plane.store.current = active_pair(PRODUCTION)
            application.state.plane.shadow.store.current = _challenger()
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://f") as client:
                errors = ("osml_shadow_errors_total", frozenset({("stage", "store")}))
                for chunk, lost in ((_items(3), 3), (_items(4), 7)):  # two batches: the warning is logged once
                    answered = await client.post("/predict/batch", json={"items": chunk}, headers=HEADERS)
                    assert answered.status_code == 200
                    wait_until(
                        lambda lost=lost: _samples(application).get(errors) == lost, timeout=30, what=f"{lost} lost"
                    )
    samples = _samples(application)
    assert samples["osml_shadow_predictions_total", frozenset({("model_version", CHALLENGER)})] == 7
    assert samples["osml_shadow_errors_total", frozenset({("stage", "store")})] == 7
    assert samples["osml_shadow_stored_total", frozenset()] == 0
    assert sum("shadow rows not stored" in r.message for r in caplog.records) == 1  # once, not per batch
