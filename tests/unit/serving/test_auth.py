"""X-API-Key: predict key for /predict*, admin key for /train* and /models*; open only by explicit opt-out."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from serving.app import create_app
from serving.model_store import ActivePair
from serving.settings import ServingSettings
from tests.unit.serving.conftest import ADMIN_KEY, PREDICT_KEY, active_pair
from tests.unit.serving.test_validation import body

pytestmark = pytest.mark.unit


async def test_missing_key_is_401(client: httpx.AsyncClient, loaded: ActivePair) -> None:
    for method, path in (("POST", "/predict"), ("GET", "/models"), ("GET", "/train/jobs/x")):
        response = await client.request(method, path, json=body() if method == "POST" else None)
        assert response.status_code == 401, path
        assert response.json()["code"] == "UNAUTHENTICATED"


async def test_wrong_key_is_403(client: httpx.AsyncClient, loaded: ActivePair) -> None:
    response = await client.post("/predict", json=body(), headers={"X-API-Key": PREDICT_KEY + "x"})
    assert response.status_code == 403
    assert response.json()["code"] == "FORBIDDEN"


async def test_predict_key_cannot_administer(client: httpx.AsyncClient) -> None:
    for method, path in (("GET", "/models"), ("POST", "/models/activate"), ("POST", "/train")):
        response = await client.request(method, path, json={}, headers={"X-API-Key": PREDICT_KEY})
        assert response.status_code == 403, path


async def test_each_key_opens_its_endpoints(client: httpx.AsyncClient, loaded: ActivePair) -> None:
    assert (await client.post("/predict", json=body(), headers={"X-API-Key": PREDICT_KEY})).status_code == 200
    assert (await client.post("/predict", json=body(), headers={"X-API-Key": ADMIN_KEY})).status_code == 200
    assert (await client.get("/models", headers={"X-API-Key": ADMIN_KEY})).status_code == 200


async def test_health_and_metrics_need_no_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert (await client.get("/metrics")).status_code == 200


def test_keys_are_required_unless_auth_is_explicitly_disabled(
    tmp_path: Path, empty_tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OSML_PREDICT_API_KEY", "OSML_ADMIN_API_KEY", "OSML_AUTH_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError, match="OSML_AUTH_DISABLED"):
        ServingSettings(predict_api_key="only-one-of-the-two-keys")
    monkeypatch.setenv("OSML_AUTH_DISABLED", "true")
    assert ServingSettings().auth_disabled


async def test_auth_disabled_opens_everything(tmp_path: Path, empty_tracking_uri: str) -> None:
    settings = ServingSettings(
        auth_disabled=True, database_url=f"sqlite:///{tmp_path / 'jobs.db'}", tracking_uri=empty_tracking_uri
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://facade") as client,
    ):
        app.state.plane.store.current = active_pair("2026-05-01_001")
        assert (await client.post("/predict", json=body())).status_code == 200
        assert (await client.get("/models")).json() == []


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        ({"predict_api_key": "short", "admin_api_key": ADMIN_KEY}, "shorter than 16 characters"),
        ({"predict_api_key": PREDICT_KEY, "admin_api_keys": f"{ADMIN_KEY},tiny"}, "shorter than 16 characters"),
        ({"predict_api_key": "change-me-predict-key", "admin_api_key": ADMIN_KEY}, "change-me placeholder"),
        ({"predict_api_key": PREDICT_KEY, "admin_api_key": "CHANGE-ME-admin-key-1234"}, "change-me placeholder"),
        ({"predict_api_key": ADMIN_KEY, "admin_api_key": ADMIN_KEY}, "both a predict and an admin API key"),
    ],
)
def test_weak_keys_are_refused_at_start(keys: dict[str, str], reason: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OSML_PREDICT_API_KEY", "OSML_ADMIN_API_KEY", "OSML_AUTH_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError, match=reason) as caught:
        ServingSettings(**keys)  # type: ignore[arg-type]
    for key in keys.values():
        assert key not in str(caught.value).replace(reason, "")  # a refused key is never echoed


async def test_a_key_is_rotated_without_downtime(
    tmp_path: Path, empty_tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = "predict-key-old-0123456789", "predict-key-new-0123456789"
    monkeypatch.setenv("OSML_PREDICT_API_KEYS", f"{old}, {new}")
    monkeypatch.setenv("OSML_ADMIN_API_KEYS", f"{ADMIN_KEY}")
    settings = ServingSettings(database_url=f"sqlite:///{tmp_path / 'jobs.db'}", tracking_uri=empty_tracking_uri)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://facade") as client,
    ):
        app.state.plane.store.current = active_pair("2026-05-01_001")
        for key in (old, new, ADMIN_KEY):
            assert (await client.post("/predict", json=body(), headers={"X-API-Key": key})).status_code == 200
        assert (await client.get("/models", headers={"X-API-Key": new})).status_code == 403
        assert (
            await client.post("/predict", json=body(), headers={"X-API-Key": "predict-key-gone-0123456789"})
        ).status_code == 403
