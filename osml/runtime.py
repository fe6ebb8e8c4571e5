"""Runtime model objects: what training logs as MLflow pyfunc and what serving predicts with.

Each model is an `mlflow.pyfunc.PythonModel` (so `mlflow models serve` answers DataFrame requests) and an
`osml.predictor.OrderPredictor` (so the facade predicts on plain dicts). The single-row path is plain
Python + numpy: a DataFrame per request would cost more than the model itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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


class CompiledTrees:
    """An XGBoost tree ensemble as flat numpy arrays, evaluated for ONE row by walking every tree at once.

    `inplace_predict` costs ~0.3 ms of fixed overhead per call; one vectorised step per tree level costs a few
    microseconds. Semantics follow XGBoost: numeric split -> left when x < threshold; categorical split ->
    right when the category is in the node's set; missing -> the node's default direction; the margin is the
    base margin plus the leaves summed in float32 in tree order, as XGBoost does, so margins agree bit for bit.
    `XGBoostScorer` checks that agreement before using it, so a format surprise can cost speed, never accuracy.
    """

    def __init__(self, booster: Any, base_margin: float) -> None:
        model = json.loads(booster.save_raw("json").decode())
        trees = model["learner"]["gradient_booster"]["model"]["trees"]
        left, right, feature, threshold, default_left, cat_row, value, roots = [], [], [], [], [], [], [], []
        category_sets: list[list[int]] = []
        offset, depth = 0, 1
        for tree in trees:
            lc, rc = np.asarray(tree["left_children"]), np.asarray(tree["right_children"])
            n = len(lc)
            own = np.arange(n) + offset
            leaf = lc == -1
            roots.append(offset)
            left.append(np.where(leaf, own, lc + offset))  # a leaf points at itself: extra steps stay put
            right.append(np.where(leaf, own, rc + offset))
            feature.append(np.asarray(tree["split_indices"]))
            is_cat = np.asarray(tree["split_type"]) == 1
            conditions = np.asarray(tree["split_conditions"], dtype=np.float32)
            threshold.append(np.where(is_cat, np.float32(np.nan), conditions))  # x < NaN is False
            value.append(np.where(leaf, conditions, np.float32(0.0)))
            default_left.append(np.asarray(tree["default_left"], dtype=bool))
            rows = np.full(n, -1)
            for node, start, size in zip(
                tree["categories_nodes"], tree["categories_segments"], tree["categories_sizes"], strict=True
            ):
                rows[node] = len(category_sets)
                category_sets.append(tree["categories"][start : start + size])
            cat_row.append(rows)
            depth = max(depth, _tree_depth(lc, rc))
            offset += n
        width = 2 + max((max(c) for c in category_sets if c), default=0)
        # go_left[row, code] of categorical nodes; the extra last row (all False) serves numeric nodes (row -1)
        go_left = np.ones((len(category_sets) + 1, width), dtype=bool)
        go_left[-1] = False
        go_left[:-1, -1] = True  # codes beyond every set: not in the set -> left
        for i, categories in enumerate(category_sets):
            go_left[i, categories] = False
        self.children = np.stack([np.concatenate(right), np.concatenate(left)])
        self.feature = np.concatenate(feature)
        self.threshold = np.concatenate(threshold)
        self.default_left = np.concatenate(default_left)
        self.cat_row = np.concatenate(cat_row)
        self.value = np.concatenate(value)
        self.roots = np.asarray(roots)
        self.go_left = go_left
        self.width = width
        self.depth = depth
        self.base_margin = np.array([base_margin], dtype=np.float32)

    def margin_one(self, row: np.ndarray) -> float:
        codes = np.clip(np.nan_to_num(row, nan=0.0).astype(np.intp), 0, self.width - 1)
        node = self.roots
        for _ in range(self.depth):
            f = self.feature[node]
            x = row[f]
            left = (x < self.threshold[node]) | self.go_left[self.cat_row[node], codes[f]]
            left = np.where(np.isnan(x), self.default_left[node], left)
            node = self.children[left.astype(np.intp), node]
        # cumsum accumulates sequentially (sum() would pair terms up and round differently from XGBoost)
        return float(np.cumsum(np.concatenate((self.base_margin, self.value[node])), dtype=np.float32)[-1])


def _tree_depth(left: np.ndarray, right: np.ndarray) -> int:
    depth, frontier = 0, [0]
    while frontier:
        depth += 1
        frontier = [c for n in frontier for c in (left[n], right[n]) if c != -1]
    return depth


# objective -> inverse link from margin to prediction; a base_score is stored on the prediction scale
_LINKS: dict[str, Callable[[np.ndarray], np.ndarray] | None] = {
    "binary:logistic": lambda margin: 1.0 / (1.0 + np.exp(-margin)),
    "reg:squarederror": None,
    "reg:absoluteerror": None,
    "reg:pseudohubererror": None,
}


class XGBoostScorer:
    """Margins from the booster (batches, `inplace_predict`) or `CompiledTrees` (single rows, once verified to
    agree exactly), then the objective's inverse link in float64: both paths give the same numbers."""

    def __init__(self, booster: Any, sample: np.ndarray | None = None) -> None:
        self.booster = booster
        # one request = one row: threads only add hand-off latency
        self.booster.set_param({"nthread": 1})
        learner = json.loads(booster.save_config())["learner"]
        objective = learner["objective"]["name"]
        if objective not in _LINKS:
            raise ValueError(f"unsupported XGBoost objective {objective!r}")
        self.link = _LINKS[objective]
        self.compiled: CompiledTrees | None = None
        if sample is not None and len(sample):
            base_score = np.float32(str(learner["learner_model_param"]["base_score"]).strip("[]"))
            # XGBoost turns the base score into a margin in float32 arithmetic; so must we, to agree exactly
            one = np.float32(1.0)
            base_margin = float(-np.log(one / base_score - one) if self.link is not None else base_score)
            self.compiled = self._compile(sample, base_margin)

    def _compile(self, sample: np.ndarray, base_margin: float) -> CompiledTrees | None:
        compiled = CompiledTrees(self.booster, base_margin)
        margins = np.asarray(self.booster.inplace_predict(sample, predict_type="margin"), dtype=np.float32)
        mine = np.array([compiled.margin_one(row) for row in sample], dtype=np.float32)
        return compiled if np.array_equal(mine, margins) else None

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        if self.compiled is not None and rows.shape[0] == 1:
            margins = np.array([self.compiled.margin_one(rows[0])])
        else:
            margins = np.asarray(self.booster.inplace_predict(rows, predict_type="margin"), dtype=np.float64)
        return margins if self.link is None else self.link(margins)


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
        if rows.shape[0] == 1 and hasattr(self.estimator, "_raw_predict"):
            # HistGradientBoosting's predict opens an OpenMP team per call: 1 row on a busy box took 45 ms with
            # 2 threads vs well under 1 ms with one. Its raw prediction takes the thread count.
            raw = self.estimator._raw_predict(rows, n_threads=1).ravel()
            return np.asarray(self.estimator._loss.link.inverse(raw), dtype=np.float64)
        return np.asarray(self.estimator.predict(rows), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Calibrator:
    """Score -> probability. Isotonic keeps its step function as (x, y) knots for `np.interp`; Platt is a sigmoid."""

    method: Literal["isotonic", "platt"]
    x: np.ndarray = field(default_factory=lambda: np.empty(0))
    y: np.ndarray = field(default_factory=lambda: np.empty(0))
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
