"""Registry writes from many trainers and facades at once, on a real (SQLite) MLflow registry.

The versions registered here carry only the tags the registry code reads; no model needs to be trained to
exercise how pairs are numbered and activated.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from osml import registry
from osml.conventions import (
    ETA_MODEL_NAME,
    MODEL_NAMES,
    SLA_MODEL_NAME,
    TAG_MODEL_VERSION,
    TAG_TRAINED_AT,
)

pytestmark = pytest.mark.unit

TRAINED_AT = "2026-05-01T10:00:00Z"


@pytest.fixture
def uri(tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for name in MODEL_NAMES:
        client.create_registered_model(name)
    (tmp_path / "model").mkdir()
    return uri


def client_for(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def register(client: MlflowClient, name: str, **tags: str) -> ModelVersion:
    source = client.tracking_uri.removeprefix("sqlite:///").rsplit("/", 1)[0] + "/model"
    return client.create_model_version(name, source, tags={TAG_TRAINED_AT: TRAINED_AT, **tags})


def register_pair(client: MlflowClient, model_version: str) -> None:
    tags = {TAG_MODEL_VERSION: model_version, TAG_TRAINED_AT: f"{model_version[:10]}T10:00:00Z"}
    register(client, SLA_MODEL_NAME, **tags)
    register(client, ETA_MODEL_NAME, **tags)


def test_trainers_finishing_at_once_never_share_a_model_version(uri: str) -> None:
    trainers = 6
    registered = threading.Barrier(trainers)

    def train_and_claim(_: int) -> str:
        client = client_for(uri)
        sla = register(client, SLA_MODEL_NAME)
        registered.wait(timeout=60)  # every trainer has its SLA version before any claims a value
        model_version = registry.claim_model_version(client, sla)
        register(client, ETA_MODEL_NAME, **{TAG_MODEL_VERSION: model_version})
        return model_version

    with ThreadPoolExecutor(trainers) as pool:
        claimed = list(pool.map(train_and_claim, range(trainers)))
    assert sorted(claimed) == [f"2026-05-01_{n:03d}" for n in range(1, trainers + 1)]
    assert [p.model_version for p in registry.list_pairs(client_for(uri))] == sorted(claimed)


def test_a_value_already_taken_moves_the_claim_past_every_value_of_its_day(uri: str) -> None:
    client = client_for(uri)
    register_pair(client, "2026-05-01_001")
    register_pair(client, "2026-05-01_002")
    client.delete_model_version(SLA_MODEL_NAME, "1")  # ranks shift: the next SLA version is the day's second
    assert registry.claim_model_version(client, register(client, SLA_MODEL_NAME)) == "2026-05-01_003"


def test_a_stale_eta_tag_is_not_reused(uri: str) -> None:
    client = client_for(uri)
    register(client, ETA_MODEL_NAME, **{TAG_MODEL_VERSION: "2026-05-01_001"})  # its SLA half was deleted
    assert registry.claim_model_version(client, register(client, SLA_MODEL_NAME)) == "2026-05-01_002"


def test_the_sequence_restarts_each_day(uri: str) -> None:
    client = client_for(uri)
    register_pair(client, "2026-04-30_001")
    sla = register(client, SLA_MODEL_NAME)
    assert registry.claim_model_version(client, sla) == "2026-05-01_001"


class ActivationInterleaved(MlflowClient):
    """Runs a whole activation of `other` between this client's ETA and SLA alias writes: the schedule in which
    two admins promoting at once used to leave the aliases on different pairs."""

    def __init__(self, uri: str, other: str) -> None:
        super().__init__(tracking_uri=uri, registry_uri=uri)
        self.other: str | None = other

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        if name == SLA_MODEL_NAME and self.other is not None:
            other, self.other = self.other, None
            registry.activate(client_for(self.tracking_uri), other)
        super().set_registered_model_alias(name, alias, version)


def test_interleaved_activations_leave_both_aliases_on_one_pair(uri: str) -> None:
    client = client_for(uri)
    register_pair(client, "2026-05-01_001")
    register_pair(client, "2026-05-01_002")
    active = registry.activate(ActivationInterleaved(uri, other="2026-05-01_002"), "2026-05-01_001")
    production = registry.production_pair(client)
    assert production is not None, "the two aliases name different pairs"
    assert production.model_version == active.model_version == "2026-05-01_001"  # the SLA alias written last


def test_concurrent_activations_settle_on_one_pair(uri: str) -> None:
    client = client_for(uri)
    versions = [f"2026-05-01_{n:03d}" for n in range(1, 5)]
    for version in versions:
        register_pair(client, version)
    start = threading.Barrier(len(versions) * 2)

    def promote(version: str) -> str:
        start.wait(timeout=60)
        return registry.activate(client_for(uri), version).model_version

    with ThreadPoolExecutor(len(versions) * 2) as pool:
        list(pool.map(promote, versions * 2))
    production = registry.production_pair(client)
    assert production is not None and production.model_version in versions
