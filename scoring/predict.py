"""One partition of features in, `orders_prediction`-shaped rows out, with the registered pair's pyfunc models.

Each worker process loads a model once (by registry URI, through MLflow's pyfunc interface) and keeps it for every
partition it scores. The pair is named by version, resolved from the alias `production` once per run, so a
promotion during a backfill cannot mix two pairs in one run.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import mlflow
import numpy as np
import orjson
import pandas as pd
from mlflow.pyfunc import PyFuncModel

from osml.precision import published_eta_minutes, published_sla_risk
from osml.schema import feature_columns

PREDICTION_COLUMNS: Final = (
    "order_id",
    "model_version",
    "sla_risk",
    "eta_minutes",
    "predicted_at",
    "features_snapshot",
    "score_run_id",
)
# features whose values are counts or codes: written as JSON integers, as a /predict body carries them
_INTEGER_FEATURES: Final = frozenset(
    {"createdHour", "createdDayOfWeek", "hasAssignee", "assigneeWorkloadOpen", "assignmentGroupWorkloadOpen"}
)


@dataclass(frozen=True)
class ScoringRun:
    """What every partition of one run shares."""

    run_id: str
    model_version: str
    sla_uri: str  # models:/os-sla-risk/<version>
    eta_uri: str
    tracking_uri: str
    predicted_at: datetime
    schema_version: str

    @property
    def feature_columns(self) -> tuple[str, ...]:
        return feature_columns(self.schema_version)


@functools.lru_cache(maxsize=4)
def load_model(uri: str, tracking_uri: str) -> PyFuncModel:
    """The pyfunc model behind a registry URI, loaded once per process."""
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.pyfunc.load_model(uri)


def _snapshot_value(name: str, value: Any) -> Any:
    return int(value) if name in _INTEGER_FEATURES else float(value) if isinstance(value, float) else value


def snapshots(features: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """Each row's features as the JSON object a /predict body would carry: missing values left out."""
    rows = features[list(columns)].astype(object).to_numpy()
    return [
        orjson.dumps(
            {
                name: _snapshot_value(name, value)
                for name, value in zip(columns, row, strict=True)
                if value is not None and not (isinstance(value, float) and math.isnan(value)) and value is not pd.NA
            }
        ).decode()
        for row in rows
    ]


def empty_predictions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": pd.Series([], dtype="str"),
            "model_version": pd.Series([], dtype="str"),
            "sla_risk": pd.Series([], dtype="float64"),
            "eta_minutes": pd.Series([], dtype="int64"),
            "predicted_at": pd.Series([], dtype="datetime64[ns, UTC]"),
            "features_snapshot": pd.Series([], dtype="str"),
            "score_run_id": pd.Series([], dtype="str"),
        }
    )


def predict_partition(features: pd.DataFrame, run: ScoringRun) -> pd.DataFrame:
    """`features` has `order_id` and the run's feature columns; one prediction row per order."""
    if features.empty:
        return empty_predictions()
    inputs = features[list(run.feature_columns)].reset_index(drop=True)
    sla = load_model(run.sla_uri, run.tracking_uri).predict(inputs)
    eta = load_model(run.eta_uri, run.tracking_uri).predict(inputs)
    n = len(inputs)
    return pd.DataFrame(
        {
            "order_id": features["order_id"].astype("str").to_numpy(),
            "model_version": pd.Series([run.model_version] * n, dtype="str"),
            "sla_risk": np.array(published_sla_risk(np.asarray(sla)), dtype=np.float64),
            "eta_minutes": np.array(published_eta_minutes(np.asarray(eta)), dtype=np.int64),
            "predicted_at": pd.Series([pd.Timestamp(run.predicted_at)] * n, dtype="datetime64[ns, UTC]"),
            "features_snapshot": pd.Series(snapshots(inputs, run.feature_columns), dtype="str"),
            "score_run_id": pd.Series([run.run_id] * n, dtype="str"),
        }
    )
