"""The facade never imports `training`: a fresh interpreter serves every kind of request, /train included,
and still has no `training` module loaded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SCRIPT = """
import asyncio, sys
import httpx
from serving.app import create_app
from serving.settings import ServingSettings

async def main() -> None:
    settings = ServingSettings(
        predict_api_key="p" * 24, admin_api_key="a" * 24, database_url=sys.argv[1], tracking_uri=sys.argv[2]
    )
    app = create_app(settings)
    admin, predict = {"X-API-Key": "a" * 24}, {"X-API-Key": "p" * 24}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://facade") as client:
            train = {"datasetRef": "s3://bucket/orders.csv", "trainConfig": {"candidates": ["xgboost"]}}
            accepted = await client.post("/train", json=train, headers=admin)
            assert accepted.status_code == 202, accepted.text
            statuses = [
                (await client.get(f"/train/jobs/{accepted.json()['jobId']}", headers=admin)).status_code,
                (await client.post("/train", json={**train, "datasetRef": "ftp://x"}, headers=admin)).status_code,
                (await client.post("/predict", json={"requestId": "r"}, headers=predict)).status_code,
                (await client.get("/models", headers=admin)).status_code,
                (await client.get("/health")).status_code,
            ]
            assert statuses == [200, 400, 400, 200, 200], statuses
    print(sorted(m for m in sys.modules if m == "training" or m.startswith("training.")))

asyncio.run(main())
"""


def test_a_facade_that_served_train_requests_has_no_training_module(tmp_path: Path) -> None:
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, f"sqlite:///{tmp_path / 'jobs.db'}", tracking],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
