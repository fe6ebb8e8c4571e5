"""/predict?explain=k and /predict/batch?explain=k on a pair of real runtime models."""

from __future__ import annotations

import math
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from osml.runtime import EtaMinutesModel, FeatureEncoder, SlaRiskModel, XGBoostScorer
from serving.model_store import ActivePair, smoke_test
from tests.support import SEED_FEATURES
from tests.unit.serving.conftest import PREDICT_KEY
from tests.unit.training.conftest import _scorer
from training.calibration import fit_calibrator
from training.candidates import DEFAULTS
from training.data.synthetic import generate
from training.features import build_training_frame
from training.split import time_split

pytestmark = pytest.mark.unit
HEADERS = {"X-API-Key": PREDICT_KEY, "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def runtime_pair() -> ActivePair:
    frame = build_training_frame(generate(orders=600, seed=5), schema_version="3")
    split = time_split(frame.created_at, test_size=0.2)
    encoder = FeatureEncoder.fit(frame.features.iloc[split.train], schema_version="3")
    training = (frame, split, encoder)
    sla_scorer, val = _scorer(training, "sla", DEFAULTS["sla"])
    eta_scorer, _ = _scorer(training, "eta", DEFAULTS["eta"])
    return ActivePair(
        model_version="2026-05-01_001",
        schema_version="3",
        trained_at="2026-05-01T10:00:00Z",
        sla=SlaRiskModel(encoder, sla_scorer, fit_calibrator(sla_scorer(val.x), val.y)),
        eta=EtaMinutesModel(encoder, eta_scorer),
        key=("2026-05-01_001", "1", "1"),
    )


@pytest.fixture
def served(app: FastAPI, runtime_pair: ActivePair) -> ActivePair:
    app.state.plane.store.current = runtime_pair
    return runtime_pair


def _body(order: str = "o-1") -> dict[str, Any]:
    return {"requestId": "r-1", "orderId": order, "features": SEED_FEATURES}


def _margin(model: SlaRiskModel | EtaMinutesModel) -> float:
    row = model.encoder.encode([SEED_FEATURES])
    return float(model.scorer.booster.inplace_predict(row, predict_type="margin")[0])


async def test_explanations_add_up_to_both_models_margins(client: httpx.AsyncClient, served: ActivePair) -> None:
    plain = (await client.post("/predict", json=_body(), headers=HEADERS)).json()
    answer = (await client.post("/predict?explain=3", json=_body(), headers=HEADERS)).json()
    assert answer["predictions"] == plain["predictions"]
    assert "explanations" not in plain
    risk, eta = answer["explanations"]["slaRisk"], answer["explanations"]["etaMinutes"]
    assert len(risk["contributions"]) == len(eta["contributions"]) == 3
    assert all(c["feature"] in served.sla.encoder.columns for c in risk["contributions"] + eta["contributions"])  # type: ignore[attr-defined]
    risk_total = risk["base"]["logOdds"] + sum(c["logOdds"] for c in risk["contributions"]) + risk["rest"]["logOdds"]
    assert risk_total == pytest.approx(_margin(served.sla), abs=1e-4)  # type: ignore[arg-type]
    eta_total = (
        eta["base"]["log1pMinutes"] + sum(c["log1pMinutes"] for c in eta["contributions"]) + eta["rest"]["log1pMinutes"]
    )
    assert eta_total == pytest.approx(_margin(served.eta), abs=1e-4)  # type: ignore[arg-type]
    # the served ETA is the booster's log1p-minutes back in minutes
    assert answer["predictions"]["etaMinutes"] == max(round(math.expm1(eta["log1pMinutes"])), 0)


async def test_batch_items_each_carry_their_own_explanations(client: httpx.AsyncClient, served: ActivePair) -> None:
    other = {**_body("o-2"), "features": {**SEED_FEATURES, "priority": "LOW", "dueInMinutes": 30}}
    response = await client.post("/predict/batch?explain=2", json={"items": [_body(), other]}, headers=HEADERS)
    items = response.json()["items"]
    assert [len(i["explanations"]["slaRisk"]["contributions"]) for i in items] == [2, 2]
    margins = [i["explanations"]["slaRisk"]["logOdds"] for i in items]
    rows = served.sla.encoder.encode([SEED_FEATURES, other["features"]])  # type: ignore[attr-defined]
    expected = served.sla.scorer.booster.inplace_predict(rows, predict_type="margin")  # type: ignore[attr-defined]
    np.testing.assert_allclose(margins, expected, atol=1e-4)


@pytest.mark.parametrize("value", ["0", "-1", "many", "51", "2.5"])
async def test_a_bad_explain_is_400_naming_it(client: httpx.AsyncClient, served: ActivePair, value: str) -> None:
    response = await client.post(f"/predict?explain={value}", json=_body(), headers=HEADERS)
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["query.explain"]


async def test_models_without_contributions_answer_409(client: httpx.AsyncClient, loaded: ActivePair) -> None:
    response = await client.post("/predict?explain=1", json=_body(), headers=HEADERS)
    assert response.status_code == 409
    assert response.json()["code"] == "EXPLANATIONS_UNAVAILABLE"


async def test_openapi_documents_the_explain_parameter(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path in ("/predict", "/predict/batch"):
        (parameter,) = spec["paths"][path]["post"]["parameters"]
        assert parameter["name"] == "explain" and parameter["in"] == "query"
        assert parameter["schema"]["minimum"] == 1


def test_loading_a_pair_builds_its_explanation_tables(runtime_pair: ActivePair) -> None:
    sla = runtime_pair.sla
    assert isinstance(sla, SlaRiskModel)
    fresh = SlaRiskModel(sla.encoder, XGBoostScorer(sla.scorer.booster), sla.calibrator)
    assert "shap" not in vars(fresh.scorer)
    smoke_test(fresh, runtime_pair.model_version)  # what the loader runs before a pair is swapped in
    assert "shap" in vars(fresh.scorer)  # the cached TreeShap: the first ?explain does not build it
