"""What serving needs of a loaded model: `osml.runtime` models implement it, test doubles stand in for them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class OrderPredictor(Protocol):
    """SLA models return calibrated breach probabilities; ETA models return minutes (>= 0)."""

    @property
    def schema_version(self) -> str: ...

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """One float per row of features (dicts shaped like a /predict `features` object)."""
        ...


@runtime_checkable
class Explainer(Protocol):
    """A predictor that can say why: per row, its `k` largest feature contributions (`osml.runtime` models)."""

    def explain(self, rows: Sequence[Mapping[str, Any]], k: int) -> list[dict[str, Any]]: ...
