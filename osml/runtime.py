"""Runtime model objects: what training logs as MLflow pyfunc and what serving predicts with.

Each model is an `mlflow.pyfunc.PythonModel` (so `mlflow models serve` answers DataFrame requests) and an
`osml.predictor.OrderPredictor` (so the facade predicts on plain dicts). The single-row path is plain
Python + numpy: a DataFrame per request would cost more than the model itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from osml.schema import SCHEMAS

# Code 0 of every categorical column is the reserved bucket for values unseen (or too rare) in training;
# a missing value is NaN, which every candidate family handles (natively or by imputation).
UNKNOWN_CODE = 0


@dataclass(frozen=True)
class FeatureEncoder:
    """Maps camelCase feature dicts (or a DataFrame of them) to float32 rows: categorical codes, then numerics."""

    schema_version: str
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    vocabularies: tuple[dict[str, int], ...]  # one per categorical column: value -> code >= 1

    @classmethod
    def fit(
        cls, frame: pd.DataFrame, *, schema_version: str, min_count: int = 2, max_categories: int = 250
    ) -> FeatureEncoder:
        """Vocabularies from the training rows: the `max_categories` most frequent values seen `min_count` times."""
        categorical, numeric = SCHEMAS[schema_version]
        vocabularies = []
        for column in categorical:
            counts = frame[column].dropna().astype(str).value_counts()
            kept = counts[counts >= min_count].index[:max_categories]
            vocabularies.append({str(value): code for code, value in enumerate(sorted(kept), start=1)})
        return cls(schema_version, categorical, numeric, tuple(vocabularies))

    @property
    def columns(self) -> tuple[str, ...]:
        return self.categorical + self.numeric

    @property
    def n_categorical(self) -> int:
        return len(self.categorical)

    def cardinalities(self) -> tuple[int, ...]:
        """Number of codes per categorical column (vocabulary + the unknown bucket)."""
        return tuple(len(vocab) + 1 for vocab in self.vocabularies)

    def _fill(self, row: np.ndarray, features: Mapping[str, Any]) -> None:
        for i, (column, vocab) in enumerate(zip(self.categorical, self.vocabularies, strict=True)):
            value = features.get(column)
            row[i] = math.nan if value is None else vocab.get(str(value), UNKNOWN_CODE)
        offset = len(self.categorical)
        for j, column in enumerate(self.numeric):
            value = features.get(column)
            row[offset + j] = math.nan if value is None else float(value)

    def encode_one(self, features: Mapping[str, Any]) -> np.ndarray:
        row = np.empty((1, len(self.categorical) + len(self.numeric)), dtype=np.float32)
        self._fill(row[0], features)
        return row

    def encode_many(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        out = np.empty((len(rows), len(self.categorical) + len(self.numeric)), dtype=np.float32)
        for i, features in enumerate(rows):
            self._fill(out[i], features)
        return out

    def encode_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Vectorised twin of `encode_many` for training and pyfunc batches; absent columns count as missing."""
        out = np.empty((len(frame), len(self.categorical) + len(self.numeric)), dtype=np.float32)
        for i, (column, vocab) in enumerate(zip(self.categorical, self.vocabularies, strict=True)):
            if column not in frame:
                out[:, i] = np.nan
                continue
            values = frame[column]
            present = values.notna().to_numpy()
            codes = values[present].astype(str).map(vocab).fillna(UNKNOWN_CODE).to_numpy(dtype=np.float32)
            out[:, i] = np.nan
            out[present, i] = codes
        offset = len(self.categorical)
        for j, column in enumerate(self.numeric):
            if column not in frame:
                out[:, offset + j] = np.nan
            else:
                out[:, offset + j] = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float32)
        return out


# A scorer maps encoded rows to raw model outputs (a score for SLA, log1p-minutes for ETA).
Scorer = Callable[[np.ndarray], np.ndarray]


class XGBoostScorer:
    """`inplace_predict` on the booster: the fastest single-row path (no DMatrix)."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster
        # one request = one row: threads only add hand-off latency
        self.booster.set_param({"nthread": 1})

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.inplace_predict(rows), dtype=np.float64)


class SklearnScorer:
    """A fitted scikit-learn estimator: the positive-class probability of a classifier, else `predict`.

    `columns` selects the encoded columns the estimator was fitted on (None = all of them).
    """

    def __init__(self, estimator: Any, *, proba: bool, columns: tuple[int, ...] | None = None) -> None:
        self.estimator = estimator
        self.proba = proba
        self.columns = None if columns is None else list(columns)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        if self.columns is not None:
            rows = rows[:, self.columns]
        if self.proba:
            return np.asarray(self.estimator.predict_proba(rows)[:, 1], dtype=np.float64)
        return np.asarray(self.estimator.predict(rows), dtype=np.float64)


@dataclass(frozen=True)
class Calibrator:
    """Score -> probability. Isotonic keeps its step function as (x, y) knots for `np.interp`; Platt is a sigmoid."""

    method: Literal["isotonic", "platt"]
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    slope: float = 1.0
    intercept: float = 0.0

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        if self.method == "isotonic":
            return np.interp(scores, self.x, self.y)
        return 1.0 / (1.0 + np.exp(-(self.slope * scores + self.intercept)))


class _RuntimeModel(PythonModel):
    def __init__(self, encoder: FeatureEncoder, scorer: Scorer) -> None:
        self.encoder = encoder
        self.scorer = scorer

    @property
    def schema_version(self) -> str:
        return self.encoder.schema_version

    def _finish(self, raw: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict_one(self, features: Mapping[str, Any]) -> float:
        return float(self._finish(self.scorer(self.encoder.encode_one(features)))[0])

    def predict_many(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        if not rows:
            return np.empty(0, dtype=np.float64)
        return self._finish(self.scorer(self.encoder.encode_many(rows)))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        """The pyfunc entry (`mlflow models serve`, batch scoring): one prediction per DataFrame row."""
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        if model_input.empty:
            return np.empty(0, dtype=np.float64)
        return self._finish(self.scorer(self.encoder.encode_frame(model_input)))


class SlaRiskModel(_RuntimeModel):
    """Calibrated probability that the order breaches its SLA."""

    def __init__(self, encoder: FeatureEncoder, scorer: Scorer, calibrator: Calibrator) -> None:
        super().__init__(encoder, scorer)
        self.calibrator = calibrator

    def _finish(self, raw: np.ndarray) -> np.ndarray:
        return np.clip(self.calibrator(raw), 0.0, 1.0)


class EtaMinutesModel(_RuntimeModel):
    """Minutes to resolution; the regressor was fitted on log1p(minutes) because durations are long-tailed."""

    def _finish(self, raw: np.ndarray) -> np.ndarray:
        return np.clip(np.expm1(raw), 0.0, None)
