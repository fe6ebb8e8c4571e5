"""The /predict fast path answers exactly as the route would, and leaves every other case to the route."""

from __future__ import annotations

import httpx
import orjson
import pytest
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from serving.fast_predict import PredictFastPath
from serving.model_store import ActivePair
from serving.payloads import PredictRequest
from tests.unit.serving.conftest import PREDICT_KEY
from tests.unit.serving.test_validation import body

pytestmark = pytest.mark.unit


async def test_answers_with_the_dataplane_result_bytes(
    app: FastAPI, client: httpx.AsyncClient, loaded: ActivePair
) -> None:
    payload = orjson.dumps(body(category="Facilities"))
    response = await client.post(
        "/predict", content=payload, headers={"X-API-Key": PREDICT_KEY, "content-type": "application/json"}
    )
    expected = orjson.dumps(app.state.plane.predict(PredictRequest.model_validate_json(payload)))
    assert response.status_code == 200
    assert response.content == expected
    assert response.headers["content-type"] == "application/json"


async def test_a_body_in_several_chunks_is_read_whole(app: FastAPI, loaded: ActivePair) -> None:
    payload = orjson.dumps(body())
    chunks = [payload[:10], payload[10:40], payload[40:]]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"x-api-key", PREDICT_KEY.encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 200
    assert orjson.loads(sent[1]["body"])["orderId"] == "o-1"  # type: ignore[arg-type]


async def test_errors_come_from_the_route_with_the_body_replayed(client: httpx.AsyncClient, loaded: ActivePair) -> None:
    wrong_key = await client.post("/predict", json=body(), headers={"X-API-Key": "nope"})
    assert wrong_key.status_code == 403
    invalid = await client.post("/predict", json=body(createdHour=30), headers={"X-API-Key": PREDICT_KEY})
    assert invalid.status_code == 400
    assert invalid.json()["errors"][0]["field"] == "features.createdHour"


class Downstream:
    """Stands for the FastAPI app behind the fast path: records what reaches it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        self.bodies.append(message["body"])
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _scope(key: str) -> Scope:
    return {"type": "http", "method": "POST", "path": "/predict", "headers": [(b"x-api-key", key.encode())]}


async def _call(app: FastAPI, payload: bytes, *, key: str = PREDICT_KEY) -> tuple[Downstream, list[Message], Scope]:
    downstream, sent, scope = Downstream(), [], _scope(key)
    fast = PredictFastPath(downstream, state=app.state, route="the /predict route")
    chunks = [payload[:10], payload[10:]]

    async def receive() -> Message:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: Message) -> None:
        sent.append(message)

    await fast(scope, receive, send)
    return downstream, sent, scope


async def test_the_fast_path_answers_a_valid_request_itself(app: FastAPI, loaded: ActivePair) -> None:
    payload = orjson.dumps(body())
    downstream, sent, scope = await _call(app, payload)
    assert downstream.bodies == []
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == orjson.dumps(app.state.plane.predict(PredictRequest.model_validate_json(payload)))
    assert scope["route"] == "the /predict route"  # metrics and the log label it as the route
    assert scope["state"]["log"] == {"requestId": "r-1", "orderId": "o-1", "modelVersion": loaded.model_version}


async def test_the_fast_path_hands_the_whole_body_to_the_route_otherwise(app: FastAPI, loaded: ActivePair) -> None:
    for payload, key in ((orjson.dumps(body()), "nope"), (orjson.dumps(body(createdHour=30)), PREDICT_KEY)):
        downstream, sent, _ = await _call(app, payload, key=key)
        assert downstream.bodies == [payload]
        assert sent[0]["status"] == 418
