"""MLflow registry webhooks: signed deliveries wake the poller when the alias `production` moves."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from fastapi import FastAPI
from mlflow.webhooks.delivery import _generate_hmac_signature
from pydantic import SecretStr, ValidationError

from osml.conventions import ETA_MODEL_NAME, SLA_MODEL_NAME
from serving import webhook
from serving.app import create_app
from serving.errors import InvalidRequest, Unauthenticated
from serving.settings import ServingSettings

pytestmark = pytest.mark.unit

SECRET = "webhook-secret-for-tests"


def event(name: str = SLA_MODEL_NAME, alias: str = "production", entity: str = "model_version_alias") -> bytes:
    data = {"name": name, "alias": alias, "version": "2"}
    return orjson.dumps({"entity": entity, "action": "created", "timestamp": "2026-11-27T14:00:00Z", "data": data})


def signed(body: bytes, *, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    return {
        "x-mlflow-delivery-id": "6a0f3b0e-delivery",
        "x-mlflow-timestamp": timestamp,
        "x-mlflow-signature": webhook.sign(secret, delivery_id="6a0f3b0e-delivery", timestamp=timestamp, body=body),
    }


def test_our_signature_is_mlflows() -> None:
    body = event()
    assert webhook.sign(SECRET, delivery_id="d", timestamp="1700000000", body=body) == _generate_hmac_signature(
        SECRET, "d", "1700000000", body.decode()
    )


def test_a_valid_delivery_passes_and_any_tampering_fails() -> None:
    body, now = event(), time.time()
    webhook.verify(SECRET, headers=signed(body), body=body, now=now, max_age_seconds=300)
    cases = {
        "other body": (signed(body), event(name=ETA_MODEL_NAME)),
        "other secret": (signed(body, secret="guess"), body),
        "stale": (signed(body, at=now - 301), body),
        "from the future": (signed(body, at=now + 301), body),
        "unsigned": ({k: v for k, v in signed(body).items() if k != "x-mlflow-signature"}, body),
        "bad timestamp": ({**signed(body), "x-mlflow-timestamp": "yesterday"}, body),
    }
    for case, (headers, sent) in cases.items():
        with pytest.raises(Unauthenticated):
            webhook.verify(SECRET, headers=headers, body=sent, now=now, max_age_seconds=300)
            pytest.fail(case)


def test_only_the_production_alias_of_our_models_moves_production() -> None:
    assert webhook.moves_production(event(SLA_MODEL_NAME)) and webhook.moves_production(event(ETA_MODEL_NAME))
    assert not webhook.moves_production(event(alias="staging"))
    assert not webhook.moves_production(event(name="someone-elses-model"))
    assert not webhook.moves_production(event(entity="model_version_tag"))
    for junk in (b"not json", b"[]", b'{"entity": "model_version_alias"}'):
        with pytest.raises(InvalidRequest):
            webhook.moves_production(junk)


def test_a_webhook_url_needs_a_secret() -> None:
    with pytest.raises(ValidationError, match="OSML_WEBHOOK_SECRET"):
        ServingSettings(auth_disabled=True, webhook_url="http://facade:8000/models/webhook")


@pytest.fixture
async def webhook_client(settings: ServingSettings) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(settings.model_copy(update={"webhook_secret": SecretStr(SECRET)}))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://f") as client:
        yield client


async def test_the_endpoint_acknowledges_signed_events(webhook_client: httpx.AsyncClient) -> None:
    for body, refresh in ((event(), True), (event(alias="staging"), False)):
        response = await webhook_client.post("/models/webhook", content=body, headers=signed(body))
        assert response.status_code == 202
        assert response.json() == {"refresh": refresh}


async def test_the_endpoint_refuses_unsigned_or_malformed_deliveries(webhook_client: httpx.AsyncClient) -> None:
    body = event()
    unsigned = await webhook_client.post("/models/webhook", content=body, headers={"X-API-Key": "anything"})
    assert unsigned.status_code == 401 and unsigned.json()["code"] == "UNAUTHENTICATED"
    junk = b"not json"
    malformed = await webhook_client.post("/models/webhook", content=junk, headers=signed(junk))
    assert malformed.status_code == 400 and malformed.json()["code"] == "INVALID_REQUEST"


async def test_without_a_secret_there_is_no_webhook(client: httpx.AsyncClient) -> None:
    body = event()
    response = await client.post("/models/webhook", content=body, headers=signed(body))
    assert response.status_code == 404
    assert "OSML_WEBHOOK_SECRET" in response.json()["message"]
