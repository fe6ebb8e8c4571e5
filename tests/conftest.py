"""Shared fixtures: real services (see tests/services.py) and temporary working directories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services


@pytest.fixture(scope="session", autouse=True)
def dataset_allow_lists(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The tests' datasets live under pytest's temporary root, on loopback PostgreSQL and in the buckets the S3
    fixtures create; set for the whole session (and the facades it starts) as an operator would."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OSML_DATASET_ROOTS", f"{tmp_path_factory.getbasetemp()},{Path.cwd()}")
        patch.setenv("OSML_DATASET_HOSTS", "127.0.0.1,localhost")
        patch.setenv("OSML_DATASET_BUCKETS", "osml,bucket")
        yield


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database URL, dropped after the test."""
    with services.fresh_database() as url:
        yield url


@pytest.fixture
def amqp_url() -> Iterator[str]:
    """A fresh RabbitMQ vhost URL, deleted after the test."""
    with services.fresh_vhost() as url:
        yield url


@pytest.fixture(scope="session")
def session_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("osml-session")


@pytest.fixture(scope="session")
def mlflow_tracking_server(session_workdir: Path) -> Iterator[services.MlflowServer]:
    """One real `mlflow server` (PostgreSQL backend store, proxied local artifacts) for the session."""
    # webhooks may call the facade over plain HTTP on loopback, and one registered mid-session is seen at once
    webhooks = {
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
    }
    with services.mlflow_server(session_workdir / "mlflow", env=webhooks) as server:
        yield server


pytest_plugins = ["tests.conftest_training", "tests.conftest_worker"]
