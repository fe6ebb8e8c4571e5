"""A facade booted while its job database (real PostgreSQL, behind a loopback proxy that is cut) is down answers
/health and 503 JOB_STORE_UNAVAILABLE on the job routes, and takes training jobs once the database is back, without
a restart: its tables are created by the first job call that reaches it (a request that raced the background retry
used to find no table and got a 500)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from serving.app import create_app
from serving.settings import ServingSettings
from tests.integration.tcp_proxy import TcpProxy
from tests.unit.serving.conftest import ADMIN_KEY, PREDICT_KEY

pytestmark = pytest.mark.integration

POLL_SECONDS = 1.0
ADMIN = {"X-API-Key": ADMIN_KEY}


@pytest.fixture
def database_behind_a_cut_proxy(pg_database: str) -> Iterator[tuple[str, TcpProxy]]:
    proxy = TcpProxy("127.0.0.1", 5432)
    proxy.cut()
    name = pg_database.rpartition("/")[2]
    try:
        yield f"postgresql://postgres@127.0.0.1:{proxy.port}/{name}", proxy
    finally:
        proxy.close()


async def test_training_jobs_are_taken_within_a_poll_of_the_database_returning(
    tmp_path: Path, database_behind_a_cut_proxy: tuple[str, TcpProxy]
) -> None:
    url, proxy = database_behind_a_cut_proxy
    settings = ServingSettings(
        predict_api_key=PREDICT_KEY,
        admin_api_key=ADMIN_KEY,
        database_url=url,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        model_poll_seconds=POLL_SECONDS,
    )
    app: FastAPI = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://f") as c:
        assert (await c.get("/health")).status_code == 200
        down = await c.get("/train/jobs/abc", headers=ADMIN)
        assert down.status_code == 503 and down.json()["code"] == "JOB_STORE_UNAVAILABLE", down.text

        proxy.restore()

        # the proxy listens again at once; the deadline is slack for a busy machine, not a wait for a retry
        deadline = time.monotonic() + POLL_SECONDS * 10
        while (await c.get("/train/jobs/abc", headers=ADMIN)).status_code != 404:
            assert time.monotonic() < deadline, "the job store did not answer after the database returned"
            await asyncio.sleep(0.05)
        body = {"datasetRef": str(tmp_path / "orders.csv")}
        queued = await c.post("/train", json=body, headers=ADMIN)
        assert queued.status_code == 202, queued.text
        job = await c.get(f"/train/jobs/{queued.json()['jobId']}", headers=ADMIN)
        assert job.status_code == 200 and job.json()["status"] == "queued"
