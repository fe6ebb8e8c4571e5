"""Fixtures giving other tests real trained, registered model pairs (owned by the training part).

- `synthetic_csv`: orders.csv (+ order_status_history.csv beside it) of a small generated dataset (session).
- `sqlite_tracking_uri`: a fresh embedded tracking store (SQLite + local artifacts) in the test's tmp dir.
- `shuffled_labels(orders_csv, destination)`: the older orders with their resolution times shuffled among them
  (both labels noise), to train a pair that must lose to one trained on the true labels.
- `trained_pair`: a factory `trained_pair(tracking_uri, activate=True) -> TrainResult` that trains the XGBoost
  candidates only on `synthetic_csv` and registers the pair (a few seconds), against any tracking URI
  (an `mlflow_tracking_server.url`, or `sqlite_tracking_uri`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
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


def shuffled_labels(orders_csv: Path, destination: Path, *, share: float = 0.6, seed: int = 0) -> Path:
    """The oldest `share` of the orders, each done after another order's resolution time (no status history)."""
    orders = pd.read_csv(orders_csv)
    created = pd.to_datetime(orders["created_at"], utc=True)
    older = orders[created < created.quantile(share)].copy()
    created = pd.to_datetime(older["created_at"], utc=True)
    done = pd.to_datetime(older["done_at"], utc=True)
    finished = done.notna().to_numpy()
    durations = (done - created).to_numpy()[finished]
    np.random.default_rng(seed).shuffle(durations)
    done[finished] = created[finished] + durations
    older["done_at"] = done.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    destination.mkdir(parents=True)
    older.to_csv(destination / "orders.csv", index=False)
    return destination / "orders.csv"


@pytest.fixture
def trained_pair(synthetic_csv: Path) -> TrainPair:
    def _train(tracking_uri: str, *, activate: bool = True, random_state: int = 42) -> TrainResult:
        return train_fast_pair(synthetic_csv, tracking_uri, activate=activate, random_state=random_state)

    return _train
