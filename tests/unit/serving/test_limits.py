"""Size caps: a body beyond OSML_MAX_PREDICT_BYTES / OSML_MAX_BATCH_BYTES / OSML_MAX_BATCH_ITEMS is a 413, and a
caller without a valid key is refused before the facade reads a byte of the body."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from fastapi import FastAPI
from starlette.types import Message

from serving.model_store import ActivePair
from serving.settings import ServingSettings
from tests.unit.serving.test_validation import PREDICT, body

pytestmark = pytest.mark.unit


@pytest.fixture
def settings(settings: ServingSettings) -> ServingSettings:
    return settings.model_copy(update={"max_predict_bytes": 2048, "max_batch_items": 3, "max_batch_bytes": 4096})


def padded(size: int) -> bytes:
    """A valid /predict body grown to `size` bytes with whitespace, so only its length can refuse it."""
    raw = orjson.dumps(body())
    return raw + b" " * (size - len(raw))


async def test_a_predict_body_within_the_cap_is_served(client: httpx.AsyncClient, loaded: ActivePair) -> None:
    response = await client.post("/predict", content=padded(2048), headers=PREDICT)
    assert response.status_code == 200


async def test_a_predict_body_beyond_the_cap_is_413(client: httpx.AsyncClient, loaded: ActivePair) -> None:
    response = await client.post("/predict", content=padded(2049), headers=PREDICT)
    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"


async def test_a_streamed_body_without_a_length_is_cut_at_the_cap(
    client: httpx.AsyncClient, loaded: ActivePair
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    response = await client.post("/predict", content=chunks(), headers=PREDICT)
    assert response.status_code == 413


async def test_a_batch_beyond_the_item_cap_is_413(client: httpx.AsyncClient, loaded: ActivePair) -> None:
    within = await client.post("/predict/batch", json={"items": [body()] * 3}, headers=PREDICT)
    beyond = await client.post("/predict/batch", json={"items": [body()] * 4}, headers=PREDICT)
    assert within.status_code == 200
    assert beyond.status_code == 413
    assert "3 items" in beyond.json()["message"]


async def test_a_batch_beyond_the_byte_cap_is_413(client: httpx.AsyncClient, loaded: ActivePair) -> None:
    content = orjson.dumps({"items": [body()]}) + b" " * 4096
    response = await client.post("/predict/batch", content=content, headers=PREDICT)
    assert response.status_code == 413


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
@pytest.mark.parametrize("headers", [[], [(b"x-api-key", b"not-a-key-of-this-facade")]])
async def test_the_key_is_checked_before_the_body_is_read(
    app: FastAPI, path: str, headers: list[tuple[bytes, bytes]]
) -> None:
    received: list[Message] = []
    sent: list[Message] = []

    async def receive() -> Message:
        message: Message = {"type": "http.request", "body": b" " * 1_000_000, "more_body": True}
        received.append(message)
        return message

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("facade", 80),
        "client": ("127.0.0.1", 1),
        "headers": [(b"host", b"facade"), (b"content-type", b"application/json"), *headers],
    }
    await app(scope, receive, send)
    assert sent[0]["status"] in (401, 403)
    assert received == []
