"""Bad input gets a 400 naming the offending field; never a 500 or a stack trace."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import orjson
import pytest

from osml.schema import SEED_EXAMPLE_FEATURES
from serving.model_store import ActivePair
from tests.support import SEED_FEATURES
from tests.unit.serving.conftest import ADMIN_KEY, PREDICT_KEY

pytestmark = pytest.mark.unit

PREDICT = {"X-API-Key": PREDICT_KEY}


def body(**features: object) -> dict[str, object]:
    merged = {**SEED_FEATURES, **features}
    return {"requestId": "r-1", "orderId": "o-1", "features": {k: v for k, v in merged.items() if v is not ...}}


def test_the_shared_seed_example_is_the_seeds_order() -> None:
    assert SEED_EXAMPLE_FEATURES == SEED_FEATURES


def fields_of(response: httpx.Response) -> list[str]:
    payload = response.json()
    assert payload["code"] == "INVALID_REQUEST"
    return [e["field"] for e in payload["errors"]]


@pytest.mark.parametrize(
    ("features", "field"),
    [
        ({"priority": ...}, "features.priority"),
        ({"priority": "URGENT"}, "features.priority"),
        ({"createdHour": 24}, "features.createdHour"),
        ({"createdHour": "two pm"}, "features.createdHour"),
        ({"createdDayOfWeek": -1}, "features.createdDayOfWeek"),
        ({"hasAssignee": 2}, "features.hasAssignee"),
        ({"category": ""}, "features.category"),
        # PostgreSQL cannot store NUL in the worker's features snapshot
        ({"category": "T\x00I"}, "features.category"),
        ({"location": "north\x00"}, "features.location"),
        ({"dueInMinutes": 1e12}, "features.dueInMinutes"),
        ({"assigneeWorkloadOpen": -3}, "features.assigneeWorkloadOpen"),
        ({"colour": "red"}, "features.colour"),
    ],
)
async def test_predict_rejects_bad_features_naming_the_field(
    client: httpx.AsyncClient, loaded: ActivePair, features: dict[str, object], field: str
) -> None:
    response = await client.post("/predict", json=body(**features), headers=PREDICT)
    assert response.status_code == 400
    assert fields_of(response) == [field]


async def test_predict_rejects_a_lone_surrogate(client: httpx.AsyncClient, loaded: ActivePair) -> None:
    # an escaped lone surrogate has no UTF-8 form (PostgreSQL could not store it): the JSON parser refuses the body
    raw = json.dumps(body()).replace('"category": "', '"category": "\\ud800', 1).encode()
    response = await client.post("/predict", content=raw, headers={**PREDICT, "content-type": "application/json"})
    assert response.status_code == 400
    assert fields_of(response) == ["body"]
    assert response.json()["errors"][0]["type"] == "json_invalid"


async def test_predict_rejects_missing_envelope_fields(client: httpx.AsyncClient, loaded: ActivePair) -> None:
    response = await client.post("/predict", json={"features": SEED_FEATURES}, headers=PREDICT)
    assert response.status_code == 400
    assert sorted(fields_of(response)) == ["orderId", "requestId"]


async def test_predict_rejects_malformed_json(client: httpx.AsyncClient, loaded: ActivePair) -> None:
    response = await client.post(
        "/predict", content=b'{"requestId": ', headers={**PREDICT, "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "Traceback" not in response.text


async def test_unknown_category_is_valid_and_reaches_the_model(client: httpx.AsyncClient, loaded: ActivePair) -> None:
    response = await client.post("/predict", json=body(category="never seen before"), headers=PREDICT)
    assert response.status_code == 200
    assert loaded.sla.seen[-1]["category"] == "never seen before"  # type: ignore[attr-defined]


async def test_predict_answers_with_the_seed_shape(client: httpx.AsyncClient, loaded: ActivePair) -> None:
    response = await client.post("/predict", json=body(), headers=PREDICT)
    assert response.status_code == 200
    # ArithmeticPredictor: base + 0.1 * rank(HIGH) + due/1e5
    assert response.json() == {
        "requestId": "r-1",
        "orderId": "o-1",
        "modelVersion": "2026-05-01_001",
        "predictions": {"slaRisk": round(0.5 + 0.2 + 0.0072, 4), "etaMinutes": 240},
    }


async def test_batch_rejects_a_bad_item_naming_its_index(client: httpx.AsyncClient, loaded: ActivePair) -> None:
    items = [body(), body(createdHour=99), body()]
    response = await client.post("/predict/batch", json={"items": items}, headers=PREDICT)
    assert response.status_code == 400
    assert fields_of(response) == ["items.1.features.createdHour"]


@pytest.mark.parametrize("payload", [{"items": []}, {}, [], {"items": "x"}])
async def test_batch_rejects_malformed_envelopes(
    client: httpx.AsyncClient, loaded: ActivePair, payload: object
) -> None:
    response = await client.post("/predict/batch", content=orjson.dumps(payload), headers=PREDICT)
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_REQUEST"


async def test_batch_answers_each_item_with_the_predict_shape(client: httpx.AsyncClient, loaded: ActivePair) -> None:
    items = [{**body(), "orderId": f"o-{i}", "requestId": f"r-{i}"} for i in range(3)] + [
        {"requestId": "r-x", "orderId": "o-x", "features": {**SEED_FEATURES, "priority": "LOW"}}
    ]
    response = await client.post("/predict/batch", json={"items": items}, headers=PREDICT)
    assert response.status_code == 200
    payload = response.json()
    assert payload["modelVersion"] == "2026-05-01_001"
    single = (await client.post("/predict", json=items[-1], headers=PREDICT)).json()
    assert payload["items"][-1] == single
    assert [i["orderId"] for i in payload["items"]] == ["o-0", "o-1", "o-2", "o-x"]


@pytest.mark.parametrize(
    ("train_body", "field"),
    [
        ({"trainConfig": {"testSize": 0.2}}, "datasetRef"),
        ({"datasetRef": "x.csv", "trainConfig": {"testSize": 1.5}}, "trainConfig.testSize"),
        ({"datasetRef": "x.csv", "trainConfig": {"randomState": "abc"}}, "trainConfig.randomState"),
        ({"datasetRef": "x.csv", "trainConfig": {"tuneSeconds": -1}}, "trainConfig.tuneSeconds"),
        ({"datasetRef": "x.csv", "trainConfig": {"engine": "spark"}}, "trainConfig.engine"),
    ],
)
async def test_train_rejects_bad_bodies_naming_the_field(
    client: httpx.AsyncClient, train_body: dict[str, object], field: str
) -> None:
    response = await client.post("/train", json=train_body, headers={"X-API-Key": ADMIN_KEY})
    assert response.status_code == 400
    assert fields_of(response) == [field]


@pytest.mark.parametrize(
    "candidates",
    [
        ["lightgbm"],
        ["logistic_regression"],  # SLA only: ETA would have no candidate, refused now rather than as a failed job
    ],
)
async def test_train_rejects_candidates_that_cannot_train_both_models(
    client: httpx.AsyncClient, tmp_path: Path, candidates: list[str]
) -> None:
    dataset = tmp_path / "orders.csv"
    dataset.write_text("id\n")
    train_body = {"datasetRef": str(dataset), "trainConfig": {"candidates": candidates}}
    response = await client.post("/train", json=train_body, headers={"X-API-Key": ADMIN_KEY})
    assert response.status_code == 400
    assert fields_of(response) == ["trainConfig.candidates"]


async def test_activate_rejects_a_missing_model_version(client: httpx.AsyncClient) -> None:
    response = await client.post("/models/activate", json={}, headers={"X-API-Key": ADMIN_KEY})
    assert response.status_code == 400
    assert fields_of(response) == ["modelVersion"]
