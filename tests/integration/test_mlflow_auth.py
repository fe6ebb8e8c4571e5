"""The deployed tracking server (mlflow/server.sh with MLflow's basic-auth app, identities from mlflow/users.py):
anonymous callers get a login prompt, the reader (the facade) reads but cannot write, the writer (the trainer)
registers versions and moves the `production` alias."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from osml.conventions import EXPERIMENT_NAME, MODEL_NAMES, PRODUCTION_ALIAS, SLA_MODEL_NAME
from tests import services

pytestmark = pytest.mark.integration

API = "/api/2.0/mlflow"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[services.MlflowServer, services.MlflowIdentities]]:
    with services.mlflow_basic_auth_server(
        tmp_path_factory.mktemp("mlflow-auth"), experiments=(EXPERIMENT_NAME,), models=MODEL_NAMES
    ) as running:
        yield running


def as_(identity: services.MlflowIdentity | None, url: str) -> httpx.Client:
    auth = (identity.username, identity.password) if identity else None
    return httpx.Client(base_url=url, auth=auth, timeout=30)


def test_anonymous_callers_get_a_login_prompt(server: tuple[services.MlflowServer, services.MlflowIdentities]) -> None:
    running, _ = server
    with as_(None, running.url) as anonymous:
        ui = anonymous.get("/")
        assert ui.status_code == 401
        assert ui.headers["WWW-Authenticate"].startswith("Basic")
        assert anonymous.get(f"{API}/registered-models/get", params={"name": SLA_MODEL_NAME}).status_code == 401
        assert anonymous.post(f"{API}/registered-models/create", json={"name": "planted"}).status_code == 401
    with httpx.Client(base_url=running.url, auth=("osml-facade", "wrong-password"), timeout=30) as guesser:
        assert guesser.get(f"{API}/registered-models/get", params={"name": SLA_MODEL_NAME}).status_code == 401


def test_the_writer_registers_and_activates_and_the_reader_cannot(
    server: tuple[services.MlflowServer, services.MlflowIdentities], tmp_path: Path
) -> None:
    running, ids = server
    with as_(ids.writer, running.url) as writer, as_(ids.reader, running.url) as reader:
        experiment = writer.get(f"{API}/experiments/get-by-name", params={"experiment_name": EXPERIMENT_NAME})
        experiment_id = experiment.json()["experiment"]["experiment_id"]
        run = writer.post(f"{API}/runs/create", json={"experiment_id": experiment_id})
        assert run.status_code == 200, run.text
        run_id = run.json()["run"]["info"]["run_id"]
        source = f"{run.json()['run']['info']['artifact_uri']}/model"
        version = writer.post(
            f"{API}/model-versions/create", json={"name": SLA_MODEL_NAME, "source": source, "run_id": run_id}
        )
        assert version.status_code == 200, version.text
        number = version.json()["model_version"]["version"]
        alias = {"name": SLA_MODEL_NAME, "alias": PRODUCTION_ALIAS, "version": number}
        assert writer.post(f"{API}/registered-models/alias", json=alias).status_code == 200

        # the reader sees what it serves ...
        current = reader.get(
            f"{API}/registered-models/alias", params={"name": SLA_MODEL_NAME, "alias": PRODUCTION_ALIAS}
        )
        assert current.status_code == 200
        assert current.json()["model_version"]["version"] == number
        # ... and can plant nothing: no new version, no alias move, no run in the training experiment
        planted = {"name": SLA_MODEL_NAME, "source": source, "run_id": run_id}
        assert reader.post(f"{API}/model-versions/create", json=planted).status_code == 403
        assert reader.post(f"{API}/registered-models/alias", json=alias).status_code == 403
        assert (
            reader.delete(
                f"{API}/registered-models/alias", params={"name": SLA_MODEL_NAME, "alias": PRODUCTION_ALIAS}
            ).status_code
            == 403
        )
        assert reader.post(f"{API}/runs/create", json={"experiment_id": experiment_id}).status_code == 403
        assert reader.post(f"{API}/users/create", json={"username": "mine", "password": "x" * 20}).status_code == 403
