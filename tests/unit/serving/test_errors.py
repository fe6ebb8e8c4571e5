"""Errors carry a machine-readable code and never a stack trace; readiness follows the loaded pair."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from osml.registry import ModelPair
from serving.errors import ModelLoadFailed
from serving.model_store import ActivePair
from tests.unit.serving.conftest import ADMIN_KEY, PREDICT_KEY, active_pair
from tests.unit.serving.test_model_store import pair
from tests.unit.serving.test_validation import body

pytestmark = pytest.mark.unit

ADMIN = {"X-API-Key": ADMIN_KEY}
PREDICT = {"X-API-Key": PREDICT_KEY}


async def test_no_model_is_500_model_unavailable(client: httpx.AsyncClient) -> None:
    for path, payload in (("/predict", body()), ("/predict/batch", {"items": [body()]})):
        response = await client.post(path, json=payload, headers=PREDICT)
        assert response.status_code == 500
        assert response.json()["code"] == "MODEL_UNAVAILABLE"


async def test_ready_is_503_until_a_pair_is_loaded(app: FastAPI, client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["code"] == "NOT_READY"
    app.state.plane.store.current = active_pair("2026-05-01_002")
    assert (await client.get("/health/ready")).json() == {"status": "ready", "modelVersion": "2026-05-01_002"}


class BrokenPredictor:
    schema_version = "2"

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        raise RuntimeError("secret internal detail /srv/model.ubj")


async def test_an_unexpected_failure_is_500_without_details(app: FastAPI) -> None:
    good = active_pair("2026-05-01_003")
    app.state.plane.store.current = ActivePair(
        good.model_version, good.schema_version, good.trained_at, BrokenPredictor(), good.eta, good.key
    )
    # as a server does: the app's exception propagates to it after the response was sent
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://facade") as client:
        response = await client.post("/predict", json=body(), headers=PREDICT)
    assert response.status_code == 500
    assert response.json() == {"code": "INTERNAL_ERROR", "message": "internal error"}
    assert "secret" not in response.text and "Traceback" not in response.text


async def test_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/train/jobs/9b2f1c7e-0000-0000-0000-000000000000", headers=ADMIN)
    assert response.status_code == 404
    assert response.json()["code"] == "JOB_NOT_FOUND"


async def test_activating_an_unknown_version_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/models/activate", json={"modelVersion": "2031-01-01_001"}, headers=ADMIN)
    assert response.status_code == 404
    assert response.json()["code"] == "MODEL_VERSION_NOT_FOUND"


async def test_unknown_route_and_method_have_codes(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nope")
    assert (missing.status_code, missing.json()["code"]) == (404, "NOT_FOUND")
    wrong = await client.get("/predict", headers=PREDICT)
    assert (wrong.status_code, wrong.json()["code"]) == (405, "METHOD_NOT_ALLOWED")


async def test_metrics_count_requests_by_route_and_predictions_by_version(
    client: httpx.AsyncClient, loaded: ActivePair
) -> None:
    for _ in range(3):
        await client.post("/predict", json=body(), headers=PREDICT)
    await client.post("/predict", json=body(createdHour=99), headers=PREDICT)
    await client.post("/predict/batch", json={"items": [body(), body()]}, headers=PREDICT)
    text = (await client.get("/metrics")).text
    assert 'osml_http_requests_total{method="POST",route="/predict",status="200"} 3.0' in text
    assert 'osml_http_requests_total{method="POST",route="/predict",status="400"} 1.0' in text
    assert 'osml_predictions_total{model_version="2026-05-01_001"} 5.0' in text
    assert 'osml_http_request_duration_seconds_count{method="POST",route="/predict/batch",status="200"} 1.0' in text


def test_openapi_documents_every_endpoint_and_error(app: FastAPI) -> None:
    spec = app.openapi()
    paths = spec["paths"]
    assert set(paths) >= {
        "/health",
        "/health/ready",
        "/metrics",
        "/predict",
        "/predict/batch",
        "/train",
        "/train/jobs/{jobId}",
        "/models",
        "/models/activate",
    }
    assert set(paths["/predict"]["post"]["responses"]) >= {"200", "400", "401", "403", "500"}
    assert set(paths["/models/activate"]["post"]["responses"]) >= {"200", "404", "409"}
    schemas = spec["components"]["schemas"]

    def body_schema(path: str) -> dict[str, Any]:
        operation = paths[path]["post"]
        assert operation["security"] == [{"APIKeyHeader": []}]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        return schemas[ref.rsplit("/", 1)[1]]  # type: ignore[no-any-return]

    single = body_schema("/predict")
    assert set(single["required"]) == {"requestId", "orderId", "features"}
    assert single["properties"]["features"] == {"$ref": "#/components/schemas/Features"}
    batch = body_schema("/predict/batch")
    assert batch["properties"]["items"]["items"] == {"$ref": "#/components/schemas/PredictRequest"}
    assert "Priority" in schemas


async def test_a_failing_production_pair_is_counted_in_metrics(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(_pair: ModelPair) -> ActivePair:
        raise ModelLoadFailed("the artifact store is unreachable")

    store = app.state.plane.store
    monkeypatch.setattr(store, "_read_production", lambda: pair("2026-05-09_001"))
    monkeypatch.setattr(store, "_load", refuse)
    await asyncio.to_thread(store.refresh)
    text = (await client.get("/metrics")).text
    assert 'osml_model_load_failures_total{model_version="2026-05-09_001"} 1.0' in text


async def test_a_wrong_method_is_405_naming_the_allowed_ones(client: httpx.AsyncClient) -> None:
    response = await client.delete("/health")
    assert response.status_code == 405
    assert response.json()["code"] == "METHOD_NOT_ALLOWED"
    assert response.headers["allow"] == "GET"


async def test_activating_with_a_read_only_registry_identity_is_403_saying_so(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import PERMISSION_DENIED

    from serving import dataplane

    def refused(*_: object) -> None:  # what a basic-auth tracking server answers the reader identity
        raise MlflowException("Permission denied", error_code=PERMISSION_DENIED)

    monkeypatch.setattr(dataplane.registry, "find_pair", lambda _client, version: pair(version))
    monkeypatch.setattr(dataplane.registry, "activate", refused)
    monkeypatch.setattr(app.state.plane.store, "_load", lambda p: active_pair(p.model_version))
    response = await client.post("/models/activate", json={"modelVersion": "2031-01-01_001"}, headers=ADMIN)
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "FORBIDDEN" and "writer identity" in response.json()["message"]
