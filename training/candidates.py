"""Candidate model families per task, with modest hyper-parameters sized for a 2-core, minutes-long budget.

Every candidate sees the same encoded matrix (categorical codes first, then numerics, NaN = missing) and
returns a scorer the runtime model wraps: SLA scorers give an uncalibrated score, ETA scorers log1p(minutes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import xgboost as xgb

from osml.runtime import FeatureEncoder, Scorer, XGBoostScorer

Task = Literal["sla", "eta"]
MAX_THREADS = 2  # the machine budget: 2 cores
# OpenMP learners (XGBoost, HistGradientBoosting, KMeans) synchronise threads every iteration: on small data, or
# on a busy machine, a second thread waiting for a descheduled sibling made them 10x slower than one thread.
MIN_ROWS_PER_THREAD = 40_000


def openmp_threads(rows: int) -> int:
    """Threads for OpenMP learners on `rows` training rows."""
    return max(1, min(MAX_THREADS, rows // MIN_ROWS_PER_THREAD))


@dataclass(frozen=True)
class TrainingSet:
    """Encoded rows of one task: train for fitting, validation for early stopping and model choice."""

    encoder: FeatureEncoder
    x_train: np.ndarray
    y_train: np.ndarray  # SLA: 0/1; ETA: log1p(minutes)
    x_val: np.ndarray
    y_val: np.ndarray
    random_state: int


@dataclass(frozen=True)
class FittedCandidate:
    name: str
    params: dict[str, Any]
    scorer: Scorer
    importances: np.ndarray | None = field(default=None)  # one value per encoded column


def _xgboost(task: Task, data: TrainingSet) -> FittedCandidate:
    encoder = data.encoder
    feature_types = ["c"] * encoder.n_categorical + ["q"] * len(encoder.numeric)
    params: dict[str, Any] = {
        "max_depth": 4,
        "eta": 0.05,
        "min_child_weight": 5,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "max_cat_to_onehot": 1,
        "max_cat_threshold": 16,  # caps the categories tried per split: 3x faster on UCI, same AUC
        "tree_method": "hist",
        "nthread": openmp_threads(len(data.x_train)),
        "seed": data.random_state,
    }
    if task == "sla":
        params |= {"objective": "binary:logistic", "eval_metric": "logloss"}
    else:
        # absolute error on log1p(minutes) fits the conditional median, which is what minimises MAE in minutes;
        # its leaf refresh is costlier per round, hence the larger step
        params |= {"objective": "reg:absoluteerror", "eval_metric": "mae", "eta": 0.1}
    dtrain = xgb.DMatrix(data.x_train, label=data.y_train, feature_types=feature_types, enable_categorical=True)
    dval = xgb.DMatrix(data.x_val, label=data.y_val, feature_types=feature_types, enable_categorical=True)
    booster = xgb.train(
        params, dtrain, num_boost_round=600, evals=[(dval, "validation")], early_stopping_rounds=50, verbose_eval=False
    )
    booster = booster[: booster.best_iteration + 1]
    gain = booster.get_score(importance_type="total_gain")
    importances = np.array([gain.get(f"f{i}", 0.0) for i in range(len(encoder.columns))])
    return FittedCandidate(
        "xgboost",
        {**params, "num_boost_round": booster.num_boosted_rounds(), "early_stopping_rounds": 50},
        XGBoostScorer(booster, sample=data.x_val[:512]),
        importances,
    )


CandidateFit = Callable[[Task, TrainingSet], FittedCandidate]

CANDIDATES: dict[Task, dict[str, CandidateFit]] = {
    "sla": {"xgboost": _xgboost},
    "eta": {"xgboost": _xgboost},
}


def validate(names: Sequence[str]) -> None:
    """ValueError unless every name is a known candidate and both tasks keep at least one (checked at submission,
    so a job never fails later for it)."""
    for task in CANDIDATES:
        select(task, tuple(names))


def select(task: Task, names: tuple[str, ...] | None) -> dict[str, CandidateFit]:
    """The task's candidates, restricted to `names` when given (unknown names are an error, not ignored)."""
    available = CANDIDATES[task]
    if names is None:
        return dict(available)
    unknown = set(names) - set(CANDIDATES["sla"]) - set(CANDIDATES["eta"])
    if unknown:
        raise ValueError(
            f"unknown candidates {sorted(unknown)}; known: {sorted(set(CANDIDATES['sla']) | set(CANDIDATES['eta']))}"
        )
    chosen = {name: fit for name, fit in available.items() if name in names}
    if not chosen:
        raise ValueError(f"none of {list(names)} is a {task} candidate; known: {sorted(available)}")
    return chosen
