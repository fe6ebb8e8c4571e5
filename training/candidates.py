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
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from osml.runtime import FeatureEncoder, Scorer, SklearnScorer, XGBoostScorer

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


def _categorical_mask(encoder: FeatureEncoder) -> np.ndarray:
    mask = np.zeros(len(encoder.columns), dtype=bool)
    mask[: encoder.n_categorical] = True
    return mask


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


def _random_forest(task: Task, data: TrainingSet) -> FittedCandidate:
    params: dict[str, Any] = {
        "n_estimators": 80,
        "min_samples_leaf": 10,
        "max_features": "sqrt",
        "max_depth": 14,
        "n_jobs": MAX_THREADS,  # independent trees: no per-iteration barrier
        "random_state": data.random_state,
    }
    if task == "sla":
        forest: Any = RandomForestClassifier(**params, class_weight=None)
    else:
        forest = RandomForestRegressor(**params)
    forest.fit(data.x_train, data.y_train)
    forest.set_params(n_jobs=1)  # prediction is mostly one row: thread hand-offs would dominate
    return FittedCandidate(
        "random_forest", params, SklearnScorer(forest, proba=task == "sla"), np.asarray(forest.feature_importances_)
    )


def _logistic_regression(task: Task, data: TrainingSet) -> FittedCandidate:
    encoder = data.encoder
    categorical = list(range(encoder.n_categorical))
    numeric = list(range(encoder.n_categorical, len(encoder.columns)))
    params: dict[str, Any] = {"C": 1.0, "max_iter": 1000, "one_hot_min_frequency": 5}
    model = Pipeline(
        [
            (
                "encode",
                ColumnTransformer(
                    [
                        (
                            "categorical",
                            make_pipeline(
                                SimpleImputer(strategy="constant", fill_value=-1),
                                OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5),
                            ),
                            categorical,
                        ),
                        (
                            "numeric",
                            make_pipeline(
                                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                                StandardScaler(),
                            ),
                            numeric,
                        ),
                    ]
                ),
            ),
            ("classify", LogisticRegression(C=params["C"], max_iter=params["max_iter"])),
        ]
    )
    model.fit(data.x_train, data.y_train)
    return FittedCandidate("logistic_regression", params, SklearnScorer(model, proba=True))


def _hist_gradient_boosting(task: Task, data: TrainingSet) -> FittedCandidate:
    params: dict[str, Any] = {
        "loss": "absolute_error",
        "learning_rate": 0.05,
        "max_iter": 300,
        "max_leaf_nodes": 31,
        "min_samples_leaf": 20,
        "early_stopping": False,
        "random_state": data.random_state,
    }
    # its binning fails on a column with no value at all (e.g. dueInMinutes where the source has no due dates)
    columns = tuple(int(i) for i in np.flatnonzero(~np.all(np.isnan(data.x_train), axis=0)))
    model = HistGradientBoostingRegressor(**params, categorical_features=_categorical_mask(data.encoder)[list(columns)])
    model.fit(data.x_train[:, columns], data.y_train)
    return FittedCandidate("hist_gradient_boosting", params, SklearnScorer(model, proba=False, columns=columns))


CandidateFit = Callable[[Task, TrainingSet], FittedCandidate]

CANDIDATES: dict[Task, dict[str, CandidateFit]] = {
    "sla": {"logistic_regression": _logistic_regression, "random_forest": _random_forest, "xgboost": _xgboost},
    "eta": {"random_forest": _random_forest, "hist_gradient_boosting": _hist_gradient_boosting, "xgboost": _xgboost},
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
