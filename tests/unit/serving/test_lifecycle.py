"""Boot without the job database or the registry, and drain on SIGTERM: readiness first, then exit."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from serving.app import create_app
from serving.cli_serve import draining_server
from serving.model_store import ActivePair
from serving.settings import ServingSettings
from tests.unit.serving.conftest import ADMIN_KEY

pytestmark = pytest.mark.unit


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket is closed


@pytest.fixture
async def down_client(
    settings: ServingSettings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    port = closed_port()
    down = settings.model_copy(
        update={
            "database_url": f"postgresql://postgres@127.0.0.1:{port}/osml",
            "tracking_uri": f"http://127.0.0.1:{port}",
        }
    )
    app = create_app(down)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://f") as c:
        yield app, c


async def test_the_facade_boots_with_postgres_and_mlflow_down(
    down_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _app, client = down_client
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/health/ready")).status_code == 503


async def test_train_answers_503_while_the_job_database_is_down(
    down_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _app, client = down_client
    response = await client.get("/train/jobs/abc", headers={"X-API-Key": ADMIN_KEY})
    assert response.status_code == 503
    assert response.json()["code"] == "JOB_STORE_UNAVAILABLE"
    assert "Traceback" not in response.text and "psycopg" not in response.text


async def test_sigterm_turns_readiness_503_before_the_server_stops(
    app: FastAPI, client: httpx.AsyncClient, loaded: ActivePair
) -> None:
    server = draining_server(uvicorn.Config(app), app, drain_seconds=0.2)
    assert (await client.get("/health/ready")).status_code == 200
    server.handle_exit(signal.SIGTERM, None)
    assert (await client.get("/health/ready")).status_code == 503
    assert (await client.get("/health")).status_code == 200
    assert not await server.on_tick(1)  # still draining: the listener stays open
    for _ in range(100):  # uvicorn ticks every 0.1 s; the drain ends after 0.2 s
        if await server.on_tick(1):
            break
        await asyncio.sleep(0.05)
    assert server.should_exit


async def test_a_second_sigterm_exits_at_once(app: FastAPI) -> None:
    server = draining_server(uvicorn.Config(app), app, drain_seconds=60)
    server.handle_exit(signal.SIGTERM, None)
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit
