"""The backend's payloads for every endpoint of docs/serving.md, sent byte for byte to a real facade process serving a real trained pair.

The facade runs as `osml serve` on an embedded store; the `s3://bucket/...` datasetRef of the /train example is served by
moto's S3 server. Responses are compared by shape, types and status codes; values come from real models.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import orjson
import pytest

from osml.conventions import MODEL_VERSION_PATTERN
from tests import services
from tests.conftest_training import FAST_CANDIDATES
from tests.contract.facade import facade_process, trainer_process
from tests.support import wait_until
from training.pipeline import train

pytestmark = pytest.mark.contract

# the /predict, /train and /models/activate request bodies, exactly as the backend sends them
SEED_PREDICT = b"""{
  "requestId": "uuid",
  "orderId": "uuid",
  "features": {
    "priority": "HIGH",
    "category": "TI",
    "createdHour": 14,
    "createdDayOfWeek": 2,
    "hasAssignee": 1,
    "dueInMinutes": 720
  }
}"""
SEED_TRAIN = b"""{
  "datasetRef": "s3://bucket/datasets/orders.csv",
  "trainConfig": {
    "testSize": 0.2,
    "randomState": 42
  }
}"""
SEED_ACTIVATE = b"""{ "modelVersion": "%s" }"""

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


@dataclass(frozen=True)
class Facade:
    url: str
    tracking_uri: str
    first_version: str
    predict_headers: dict[str, str]
    admin_headers: dict[str, str]
    s3: services.S3Server


@pytest.fixture(scope="module")
def facade(tmp_path_factory: pytest.TempPathFactory, synthetic_csv: Path) -> Iterator[Facade]:
    workdir = tmp_path_factory.mktemp("contract")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    first = train(dataset_ref=str(synthetic_csv), tracking_uri=uri, activate=True, candidates=FAST_CANDIDATES)
    with (
        services.s3_server(workdir, bucket="bucket") as s3,
        facade_process(
            workdir,
            tracking_uri=uri,
            database_url=f"sqlite:///{workdir / 'jobs.db'}",
            env={"OSML_MODEL_POLL_SECONDS": "1"},
        ) as process,
        trainer_process(workdir, tracking_uri=uri, database_url=f"sqlite:///{workdir / 'jobs.db'}", env=s3.env),
    ):
        yield Facade(
            url=process.url,
            tracking_uri=uri,
            first_version=first.model_version,
            predict_headers=process.predict_headers,
            admin_headers=process.admin_headers,
            s3=s3,
        )


def test_6_1_health(facade: Facade) -> None:
    response = httpx.get(f"{facade.url}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_6_2_predict(facade: Facade) -> None:
    response = httpx.post(f"{facade.url}/predict", content=SEED_PREDICT, headers=facade.predict_headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"requestId", "orderId", "modelVersion", "predictions"}
    assert (body["requestId"], body["orderId"]) == ("uuid", "uuid")
    assert MODEL_VERSION_PATTERN.match(body["modelVersion"])
    assert set(body["predictions"]) == {"slaRisk", "etaMinutes"}
    risk, eta = body["predictions"]["slaRisk"], body["predictions"]["etaMinutes"]
    assert isinstance(risk, float) and 0.0 <= risk <= 1.0 and round(risk, 4) == risk
    assert isinstance(eta, int) and eta >= 0


def test_6_2_the_seed_payload_is_predicted_at_creation(facade: Facade) -> None:
    # a payload without the as-of fields means "at creation": the same answer as one that says so field by field
    at_creation = {"timeSinceCreatedMinutes": 0, "minutesInStatus": 0, "statusChanges": 0, "pauses": 0}
    seed = orjson.loads(SEED_PREDICT)
    explicit = seed | {"features": seed["features"] | at_creation}
    answers = [
        httpx.post(f"{facade.url}/predict", content=orjson.dumps(body), headers=facade.predict_headers).json()
        for body in (seed, explicit)
    ]
    assert answers[0]["predictions"] == answers[1]["predictions"]
    # and not the answer of an order long open
    later = seed | {"features": seed["features"] | at_creation | {"timeSinceCreatedMinutes": 20_000}}
    old = httpx.post(f"{facade.url}/predict", content=orjson.dumps(later), headers=facade.predict_headers).json()
    assert old["predictions"] != answers[0]["predictions"]


def test_6_2_invalid_features_are_400(facade: Facade) -> None:
    missing = SEED_PREDICT.replace(b'"priority": "HIGH",', b"")
    response = httpx.post(f"{facade.url}/predict", content=missing, headers=facade.predict_headers)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "features.priority"
    wrong = SEED_PREDICT.replace(b'"createdHour": 14', b'"createdHour": 25')
    response = httpx.post(f"{facade.url}/predict", content=wrong, headers=facade.predict_headers)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "features.createdHour"


def _poll_job(facade: Facade, job_id: str, seen: list[dict[str, Any]]) -> dict[str, Any] | None:
    response = httpx.get(f"{facade.url}/train/jobs/{job_id}", headers=facade.admin_headers)
    assert response.status_code == 200
    view: dict[str, Any] = response.json()
    seen.append(view)
    return view if view["status"] in {"done", "failed"} else None


def test_6_3_and_6_4_training_job(facade: Facade, synthetic_csv: Path) -> None:
    # the /train example exactly: the dataset is not in the bucket yet, so this job fails, with its reason
    response = httpx.post(f"{facade.url}/train", content=SEED_TRAIN, headers=facade.admin_headers)
    assert response.status_code == 202
    accepted = response.json()
    assert set(accepted) == {"jobId", "status"} and accepted["status"] == "queued"
    uuid.UUID(accepted["jobId"])
    seen: list[dict[str, Any]] = []
    failed = wait_until(lambda: _poll_job(facade, accepted["jobId"], seen), timeout=180, what="the job to fail")
    assert failed["status"] == "failed" and "orders.csv" in failed["reason"]

    # the same request once the dataset is there (fast candidates only, to keep the test short)
    s3 = boto3.client(
        "s3",
        endpoint_url=facade.s3.endpoint_url,
        aws_access_key_id=facade.s3.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=facade.s3.env["AWS_SECRET_ACCESS_KEY"],
        region_name=facade.s3.env["AWS_DEFAULT_REGION"],
    )
    s3.upload_file(str(synthetic_csv), "bucket", "datasets/orders.csv")
    body = {
        "datasetRef": "s3://bucket/datasets/orders.csv",
        "trainConfig": {"testSize": 0.2, "randomState": 42, "candidates": list(FAST_CANDIDATES)},
    }
    job_id = httpx.post(f"{facade.url}/train", json=body, headers=facade.admin_headers).json()["jobId"]
    seen = []
    done = wait_until(lambda: _poll_job(facade, job_id, seen), timeout=300, interval=0.2, what="the job to finish")

    # GET /train/jobs/{jobId} while running: jobId, status, progress, modelVersion null
    for view in seen[:-1]:
        assert {"jobId", "status", "progress", "modelVersion"} <= set(view)
        assert view["status"] in {"queued", "running"} and view["modelVersion"] is None
        assert 0.0 <= view["progress"] <= 1.0
    progress = [v["progress"] for v in seen]
    assert progress == sorted(progress)
    # GET /train/jobs/{jobId} when finished
    assert done["status"] == "done", done
    assert done["jobId"] == job_id
    assert MODEL_VERSION_PATTERN.match(done["modelVersion"])
    assert set(done["metrics"]) == {"auc", "f1", "maeMinutes"}
    assert all(isinstance(v, int | float) for v in done["metrics"].values())
    assert 0.5 < done["metrics"]["auc"] <= 1.0


def test_6_3_bad_dataset_ref_is_400(facade: Facade) -> None:
    bad = SEED_TRAIN.replace(b"s3://bucket/datasets/orders.csv", b"ftp://example/orders.csv")
    response = httpx.post(f"{facade.url}/train", content=bad, headers=facade.admin_headers)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "datasetRef"


def test_6_5_models(facade: Facade) -> None:
    response = httpx.get(f"{facade.url}/models", headers=facade.admin_headers)
    assert response.status_code == 200
    models = response.json()
    assert isinstance(models, list) and models
    for entry in models:
        assert {"modelVersion", "trainedAt"} <= set(entry)
        assert MODEL_VERSION_PATTERN.match(entry["modelVersion"])
        assert ISO_UTC.match(entry["trainedAt"]), entry["trainedAt"]
    assert facade.first_version in {m["modelVersion"] for m in models}


def test_6_6_activate(facade: Facade, synthetic_csv: Path) -> None:
    second = train(
        dataset_ref=str(synthetic_csv),
        tracking_uri=facade.tracking_uri,
        activate=False,
        random_state=7,
        candidates=FAST_CANDIDATES,
    ).model_version
    for version in (second, facade.first_version):
        body = SEED_ACTIVATE % version.encode()
        response = httpx.post(f"{facade.url}/models/activate", content=body, headers=facade.admin_headers)
        assert response.status_code == 200
        assert response.json() == {"activeModelVersion": version}
        predicted = httpx.post(f"{facade.url}/predict", content=SEED_PREDICT, headers=facade.predict_headers)
        assert predicted.json()["modelVersion"] == version

    unknown = SEED_ACTIVATE % b"2001-01-01_001"
    response = httpx.post(f"{facade.url}/models/activate", content=unknown, headers=facade.admin_headers)
    assert response.status_code == 404
    assert response.json()["code"] == "MODEL_VERSION_NOT_FOUND"
