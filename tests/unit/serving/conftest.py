"""Serving unit fixtures: a facade app on an empty embedded registry, with a pair set as the active one.

The unit tests exercise the facade's own logic (validation, auth, errors, swapping); the predictors here are
small deterministic implementations of `osml.predictor.OrderPredictor`. Contract and integration tests use
real trained pairs from the registry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from serving.app import create_app
from serving.model_store import ActivePair
from serving.settings import ServingSettings

PREDICT_KEY = "predict-key-for-tests"
ADMIN_KEY = "admin-key-for-tests"


class ArithmeticPredictor:
    """Deterministic: a value from the priority and the due time, so tests can check what reached the model."""

    schema_version = "2"

    def __init__(self, base: float) -> None:
        self.base = base
        self.seen: list[Mapping[str, Any]] = []

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        self.seen.extend(rows)
        rank = ["LOW", "MEDIUM", "HIGH", "CRITICAL"].index
        return np.array([self.base + 0.1 * rank(f["priority"]) + (f.get("dueInMinutes") or 0.0) / 1e5 for f in rows])


def active_pair(model_version: str, *, sla_base: float = 0.5, eta_base: float = 240.0) -> ActivePair:
    return ActivePair(
        model_version=model_version,
        schema_version="2",
        trained_at="2026-05-01T10:00:00Z",
        sla=ArithmeticPredictor(sla_base),
        eta=ArithmeticPredictor(eta_base),
        key=(model_version, "1", "1"),
    )


@pytest.fixture(scope="session")
def empty_tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An embedded (SQLite) registry with no models; created once, it is never written to."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow-empty') / 'mlflow.db'}"


@pytest.fixture
def settings(tmp_path: Path, empty_tracking_uri: str) -> ServingSettings:
    return ServingSettings(
        predict_api_key=PREDICT_KEY,
        admin_api_key=ADMIN_KEY,
        database_url=f"sqlite:///{tmp_path / 'jobs.db'}",
        tracking_uri=empty_tracking_uri,
        model_poll_seconds=60,
    )


@pytest.fixture
async def app(settings: ServingSettings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://facade") as c:
        yield c


@pytest.fixture
def loaded(app: FastAPI) -> ActivePair:
    pair = active_pair("2026-05-01_001")
    app.state.plane.store.current = pair
    return pair
