"""Drift through the facade: served rows against the pair's training profile, as JSON and as Prometheus gauges."""

from __future__ import annotations

from dataclasses import replace

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI

from osml.profile import of_model
from osml.runtime import EtaMinutesModel, SlaRiskModel
from serving.model_store import ActivePair
from tests.unit.serving.conftest import ADMIN_KEY, PREDICT_KEY
from tests.unit.serving.test_explanations import runtime_pair  # noqa: F401  (a fixture)
from training.data.synthetic import generate
from training.features import build_training_frame

pytestmark = pytest.mark.unit
SHIFTED = {"priority", "assignmentGroupWorkloadOpen"}


@pytest.fixture(scope="module")
def orders() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training rows and traffic drawn like them: two random parts of the same 5,000 orders."""
    features = build_training_frame(generate(orders=5000, seed=17), schema_version="3").features
    order = np.random.default_rng(0).permutation(len(features))
    cut = int(0.6 * len(order))
    return features.iloc[order[:cut]], features.iloc[order[cut:]]


@pytest.fixture
def profiled(app: FastAPI, runtime_pair: ActivePair, orders: tuple[pd.DataFrame, pd.DataFrame]) -> ActivePair:  # noqa: F811
    sla, eta = runtime_pair.sla, runtime_pair.eta
    assert isinstance(sla, SlaRiskModel) and isinstance(eta, EtaMinutesModel)
    sla, eta = SlaRiskModel(sla.encoder, sla.scorer, sla.calibrator), EtaMinutesModel(eta.encoder, eta.scorer)
    matrix = sla.encoder.encode(orders[0])
    sla.profile, eta.profile = of_model(sla, matrix), of_model(eta, matrix)
    pair = replace(runtime_pair, sla=sla, eta=eta)
    app.state.plane.store.current = pair
    return pair


async def _serve(client: httpx.AsyncClient, frame: pd.DataFrame) -> None:
    records = [{k: v for k, v in row.items() if not pd.isna(v)} for row in frame.to_dict(orient="records")]
    items = [{"requestId": f"r{i}", "orderId": f"o{i}", "features": r} for i, r in enumerate(records)]
    headers = {"X-API-Key": PREDICT_KEY}
    for item in items[:20]:  # single requests and batches both count
        assert (await client.post("/predict", json=item, headers=headers)).status_code == 200
    for start in range(20, len(items), 500):
        response = await client.post("/predict/batch", json={"items": items[start : start + 500]}, headers=headers)
        assert response.status_code == 200


async def _drift(client: httpx.AsyncClient) -> dict[str, object]:
    response = await client.get("/monitoring/drift", headers={"X-API-Key": ADMIN_KEY})
    assert response.status_code == 200
    report: dict[str, object] = response.json()
    return report


async def test_traffic_like_training_stays_below_0_1_everywhere(
    client: httpx.AsyncClient, profiled: ActivePair, orders: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    await _serve(client, orders[1])
    report = await _drift(client)
    assert report["windowRows"] == len(orders[1]) and report["modelVersion"] == profiled.model_version
    psi: dict[str, float] = report["psi"]  # type: ignore[assignment]
    assert set(psi) == {*profiled.sla.encoder.columns, "slaRisk", "etaMinutes"}  # type: ignore[attr-defined]
    assert max(psi.values()) < 0.1, psi


async def test_a_shift_crosses_0_25_on_the_shifted_features_only(
    client: httpx.AsyncClient, profiled: ActivePair, orders: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    served = orders[1]
    shifted = served.assign(priority="CRITICAL", assignmentGroupWorkloadOpen=served["assignmentGroupWorkloadOpen"] * 5)
    await _serve(client, shifted)
    psi: dict[str, float] = (await _drift(client))["psi"]  # type: ignore[assignment]
    assert all(psi[name] > 0.25 for name in SHIFTED), psi
    # the outputs move with their inputs; every other feature stays where it was
    assert all(v < 0.1 for name, v in psi.items() if name not in SHIFTED | {"slaRisk", "etaMinutes"}), psi
    metrics = (await client.get("/metrics")).text
    line = f'osml_drift_psi{{feature="priority",model_version="{profiled.model_version}",role="production"}}'
    assert line in metrics
    assert (
        f'osml_drift_window_rows{{model_version="{profiled.model_version}",role="production"}} {len(served)}.0'
        in metrics
    )


async def test_drift_needs_the_admin_key_and_reports_nothing_for_an_unprofiled_pair(
    client: httpx.AsyncClient, loaded: ActivePair
) -> None:
    assert (await client.get("/monitoring/drift", headers={"X-API-Key": PREDICT_KEY})).status_code == 403
    answer = await client.get("/monitoring/drift", headers={"X-API-Key": ADMIN_KEY})
    assert answer.status_code == 200
    assert answer.json() | {"modelVersion": None} == {
        "modelVersion": None,
        "role": "production",
        "windowRows": 0,
        "windowCapacity": 0,
        "windowFrom": None,
        "windowTo": None,
        "psi": {},
    }
