"""The worker's in-process scorer answers exactly as the facade does, with the facade client's errors."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from prometheus_client import REGISTRY
from sqlalchemy import select

from osml import registry
from osml.conventions import CHALLENGER_ALIAS, ETA_MODEL_NAME, SLA_MODEL_NAME
from osml.job_store import make_engine
from serving.shadow import shadow_predictions
from tests.conftest_training import TrainPair
from tests.contract.facade import facade_process
from tests.services import fresh_database
from tests.support import SEED_FEATURES
from worker.facade_client import FacadeRejected, PredictItem
from worker.local_scorer import InProcessScorer
from worker.migrate import upgrade
from worker.resilience import TransientError

pytestmark = pytest.mark.integration


def _scorer(tracking_uri: str, database_url: str) -> InProcessScorer:
    return InProcessScorer(
        tracking_uri=tracking_uri, poll_seconds=60, database_url=database_url, shadow_queue_rows=1000
    )


async def test_predicts_as_the_facade_and_rejects_what_it_rejects(
    sqlite_tracking_uri: str, trained_pair: TrainPair, tmp_path: Path
) -> None:
    trained_pair(sqlite_tracking_uri, activate=True)
    items = [
        PredictItem("r-1", "o-1", SEED_FEATURES),
        PredictItem("r-2", "o-2", {**SEED_FEATURES, "priority": "LOW", "category": "never seen"}),
    ]
    scorer = _scorer(sqlite_tracking_uri, f"sqlite:///{tmp_path / 'worker.db'}")
    try:
        mine = await scorer.predict_batch(items)
        assert await scorer.predict(items[1]) == mine[1]
        with pytest.raises(FacadeRejected, match="createdHour"):
            await scorer.predict_batch([PredictItem("r-3", "o-3", {**SEED_FEATURES, "createdHour": 24})])
    finally:
        await scorer.aclose()
    with facade_process(tmp_path, tracking_uri=sqlite_tracking_uri, database_url=f"sqlite:///{tmp_path / 'j.db'}") as f:
        body = {"items": [item.body() for item in items]}
        async with httpx.AsyncClient(timeout=30) as client:
            answers = (await client.post(f"{f.url}/predict/batch", json=body, headers=f.predict_headers)).json()
    expected = [
        (a["modelVersion"], a["predictions"]["slaRisk"], a["predictions"]["etaMinutes"]) for a in answers["items"]
    ]
    assert [(p.model_version, p.sla_risk, p.eta_minutes) for p in mine] == expected


async def test_no_production_pair_is_transient(sqlite_tracking_uri: str, tmp_path: Path) -> None:
    scorer = _scorer(sqlite_tracking_uri, f"sqlite:///{tmp_path / 'worker.db'}")
    try:
        with pytest.raises(TransientError, match="no model pair"):
            await scorer.predict(PredictItem("r-1", "o-1", SEED_FEATURES))
    finally:
        await scorer.aclose()


async def test_a_challenger_is_scored_in_the_shadow_into_the_workers_database(
    sqlite_tracking_uri: str, trained_pair: TrainPair, tmp_path: Path
) -> None:
    production = trained_pair(sqlite_tracking_uri, activate=True).model_version
    challenger = trained_pair(sqlite_tracking_uri, activate=False, random_state=7).model_version
    client = MlflowClient(tracking_uri=sqlite_tracking_uri, registry_uri=sqlite_tracking_uri)
    pair = registry.find_pair(client, challenger)
    client.set_registered_model_alias(SLA_MODEL_NAME, CHALLENGER_ALIAS, pair.sla.version)
    client.set_registered_model_alias(ETA_MODEL_NAME, CHALLENGER_ALIAS, pair.eta.version)
    items = [PredictItem(f"r-{i}", f"o-{i}", {**SEED_FEATURES, "dueInMinutes": 60 * i}) for i in range(5)]

    with fresh_database("osml_worker_shadow") as database_url:
        upgrade(database_url)
        scorer = _scorer(sqlite_tracking_uri, database_url)
        try:
            answers = await scorer.predict_batch(items)
            assert {a.model_version for a in answers} == {production}
            assert scorer.shadow.store.current is not None
            assert scorer.shadow.store.current.model_version == challenger
        finally:
            await scorer.aclose()  # scores and stores what is queued
        engine = make_engine(database_url)
        with engine.connect() as conn:
            rows = conn.execute(select(shadow_predictions).order_by(shadow_predictions.c.order_id)).mappings().all()
        engine.dispose()
    assert [r["order_id"] for r in rows] == [i.order_id for i in items]
    assert {(r["production_version"], r["challenger_version"]) for r in rows} == {(production, challenger)}
    assert [float(r["production_sla_risk"]) for r in rows] == [a.sla_risk for a in answers]
    assert REGISTRY.get_sample_value("osml_challenger_model_version", {"model_version": challenger}) == 1
