"""What a loaded model offers the facade, beyond MLflow's pyfunc `predict(DataFrame)`.

Training logs each model as an MLflow pyfunc whose python model implements this protocol, so the facade
unwraps it (`mlflow.pyfunc.load_model(uri).unwrap_python_model()`) and predicts on plain dicts without
building a DataFrame per request (the pyfunc wrapper costs ~0.5 ms/row; this path is ~10x cheaper).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class OrderPredictor(Protocol):
    """SLA models return calibrated breach probabilities; ETA models return minutes (>= 0)."""

    schema_version: str

    def predict_one(self, features: Mapping[str, Any]) -> float: ...

    def predict_many(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray: ...
