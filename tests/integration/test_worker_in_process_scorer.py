"""The worker's in-process scorer answers exactly as the facade does, with the facade client's errors."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest_training import TrainPair
from tests.contract.facade import facade_process
from tests.support import SEED_FEATURES
from worker.facade_client import FacadeRejected, PredictItem
from worker.local_scorer import InProcessScorer
from worker.resilience import TransientError

pytestmark = pytest.mark.integration


async def test_predicts_as_the_facade_and_rejects_what_it_rejects(
    sqlite_tracking_uri: str, trained_pair: TrainPair, tmp_path: Path
) -> None:
    trained_pair(sqlite_tracking_uri, activate=True)
    items = [
        PredictItem("r-1", "o-1", SEED_FEATURES),
        PredictItem("r-2", "o-2", {**SEED_FEATURES, "priority": "LOW", "category": "never seen"}),
    ]
    scorer = InProcessScorer(tracking_uri=sqlite_tracking_uri, poll_seconds=60)
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


async def test_no_production_pair_is_transient(sqlite_tracking_uri: str) -> None:
    scorer = InProcessScorer(tracking_uri=sqlite_tracking_uri, poll_seconds=60)
    try:
        with pytest.raises(TransientError, match="no model pair"):
            await scorer.predict(PredictItem("r-1", "o-1", SEED_FEATURES))
    finally:
        await scorer.aclose()
