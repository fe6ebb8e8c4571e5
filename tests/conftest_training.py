"""Fixtures giving other tests real trained, registered model pairs (owned by the training part).

- `synthetic_csv`: orders.csv (+ order_status_history.csv beside it) of a small generated dataset (session).
- `sqlite_tracking_uri`: a fresh embedded tracking store (SQLite + local artifacts) in the test's tmp dir.
- `trained_pair`: a factory `trained_pair(tracking_uri, activate=True) -> TrainResult` that trains the XGBoost
  candidates only on `synthetic_csv` and registers the pair (a few seconds), against any tracking URI
  (an `mlflow_tracking_server.url`, or `sqlite_tracking_uri`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pytest

from training.data.synthetic import generate, write_csv
from training.pipeline import TrainResult, train

SYNTHETIC_ORDERS = 1500
FAST_CANDIDATES = ("xgboost",)


class TrainPair(Protocol):
    def __call__(self, tracking_uri: str, *, activate: bool = True, random_state: int = 42) -> TrainResult: ...


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic-orders")
    write_csv(generate(orders=SYNTHETIC_ORDERS, seed=7), out)
    return out / "orders.csv"


@pytest.fixture
def sqlite_tracking_uri(tmp_path: Path) -> str:
    (tmp_path / "mlflow").mkdir()
    return f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"


def train_fast_pair(dataset: Path, tracking_uri: str, *, activate: bool = True, random_state: int = 42) -> TrainResult:
    """The XGBoost defaults only (no search) on `dataset`, registered (and activated) in `tracking_uri`: for
    module- and session-scoped fixtures, which cannot take `trained_pair`."""
    return train(
        dataset_ref=str(dataset),
        tracking_uri=tracking_uri,
        activate=activate,
        random_state=random_state,
        candidates=FAST_CANDIDATES,
    )


@pytest.fixture
def trained_pair(synthetic_csv: Path) -> TrainPair:
    def _train(tracking_uri: str, *, activate: bool = True, random_state: int = 42) -> TrainResult:
        return train_fast_pair(synthetic_csv, tracking_uri, activate=activate, random_state=random_state)

    return _train
