"""A password in a `postgresql://` datasetRef (in the URL's userinfo or as `?password=`) reaches no run param,
tag, dataset lineage, model version or artifact: MLflow records the masked reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from osml.conventions import EXPERIMENT_NAME, MODEL_NAMES
from tests.conftest_training import FAST_CANDIDATES
from training.data.orders import load_orders
from training.data.postgres import load_into_postgres
from training.pipeline import train

pytestmark = pytest.mark.integration


def test_mlflow_records_the_reference_without_its_password(
    pg_database: str, synthetic_csv: Path, sqlite_tracking_uri: str
) -> None:
    load_into_postgres(load_orders(str(synthetic_csv)), pg_database)
    user_and_host = pg_database.split("://", 1)[1]
    user, _, rest = user_and_host.partition("@")
    # the local server trusts loopback, so the passwords are carried but never checked: only where they end up is
    ref = f"postgresql://{user}:hunter1@{rest}?password=hunter2&application_name=osml-test"
    result = train(dataset_ref=ref, tracking_uri=sqlite_tracking_uri, activate=False, candidates=FAST_CANDIDATES)

    client = MlflowClient(tracking_uri=sqlite_tracking_uri, registry_uri=sqlite_tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    assert experiment is not None
    recorded: list[object] = []
    for run in client.search_runs([experiment.experiment_id]):
        recorded += [run.data.params, run.data.tags]
        recorded += [
            (d.dataset.name, d.dataset.source, d.dataset.source_type, d.dataset.profile)
            for d in run.inputs.dataset_inputs
        ]
    for name in MODEL_NAMES:
        for version in client.search_model_versions(f"name='{name}'"):
            recorded += [version.tags, version.description, version.source]
    text = json.dumps(recorded, default=str)
    assert result.model_version and "osml-test" in text  # the reference is recorded ...
    assert "hunter" not in text  # ... without either password
    store = Path(sqlite_tracking_uri.removeprefix("sqlite:///")).parent  # the database and the artifacts
    files = [path for path in store.rglob("*") if path.is_file()]
    assert any(path.name == "MLmodel" for path in files)
    for path in files:
        assert b"hunter" not in path.read_bytes(), f"{path} holds the password"
