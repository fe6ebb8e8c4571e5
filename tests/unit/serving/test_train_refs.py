"""/train and the job it records: a datasetRef outside the allow-lists is a 400 naming the field, and a password
in an accepted one is never answered back."""

from __future__ import annotations

import httpx
import pytest

from tests.unit.serving.conftest import ADMIN_KEY

pytestmark = pytest.mark.unit

ADMIN = {"X-API-Key": ADMIN_KEY}


async def test_a_host_file_is_refused_at_submission(client: httpx.AsyncClient) -> None:
    for ref in ("/etc/passwd", "file:///etc/passwd", "postgresql://u@10.1.2.3:6379/x", "s3://someone-elses/x.csv"):
        response = await client.post("/train", json={"datasetRef": ref}, headers=ADMIN)
        assert response.status_code == 400, ref
        error = response.json()["errors"][0]
        assert error["field"] == "datasetRef"
        assert "allowed dataset" in error["message"]
        assert "root:x" not in response.text


async def test_a_password_in_the_reference_is_not_answered_back(client: httpx.AsyncClient) -> None:
    ref = "postgresql://trainer:hunter2@127.0.0.1:5432/orders?password=hunter3"
    submitted = await client.post("/train", json={"datasetRef": ref}, headers=ADMIN)
    assert submitted.status_code == 202
    job = await client.get(f"/train/jobs/{submitted.json()['jobId']}", headers=ADMIN)
    assert job.json()["datasetRef"] == "postgresql://trainer:***@127.0.0.1:5432/orders?password=***"
    assert "hunter" not in job.text


async def test_a_dataset_path_the_filesystem_cannot_resolve_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/train", json={"datasetRef": "0" * 1500}, headers={"X-API-Key": ADMIN_KEY})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "datasetRef"
