"""The model candidates per task, all XGBoost boosters, and the one way a booster is fitted.

Every candidate sees the same encoded matrix (categorical codes first, then numerics, NaN = missing). SLA
boosters give an uncalibrated probability (`binary:logistic`); ETA boosters give log1p(minutes) through an
identity link, so any of the regression objectives below can serve.

- `xgboost`: fixed, modest defaults (what the pipeline used before tuning existed), rounds by early stopping;
- `xgboost_tuned`: the best configuration a time-boxed search finds on the time folds (training/tune.py);
- `PLAIN` (never a candidate, never registered): the fixed reference every run is compared with.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import xgboost as xgb

from osml import train_requests
from osml.runtime import FeatureEncoder

Task = Literal["sla", "eta"]
TASKS: tuple[Task, ...] = ("sla", "eta")

# OpenMP learners (XGBoost, KMeans) synchronise threads every iteration: on small data, or on a busy machine, a
# second thread waiting for a descheduled sibling made them 10x slower than one thread.
MIN_ROWS_PER_THREAD = 40_000


def machine_threads() -> int:
    """The cores this process may run on (the affinity mask, which containers narrow; else the CPU count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def openmp_threads(rows: int) -> int:
    """Threads for OpenMP learners on `rows` training rows."""
    return max(1, min(machine_threads(), rows // MIN_ROWS_PER_THREAD))


# Shared by the pipeline's configurations (defaults and searched): histogram trees, native categorical splits with
# the categories tried per split capped (3x faster on a 250-value column, same quality).
_COMMON: dict[str, Any] = {"tree_method": "hist", "max_cat_to_onehot": 1, "max_cat_threshold": 16}

DEFAULTS: dict[Task, dict[str, Any]] = {
    "sla": {
        **_COMMON,
        "objective": "binary:logistic",
        "max_depth": 4,
        "eta": 0.05,
        "min_child_weight": 5.0,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "lambda": 1.0,
    },
    # absolute error on log1p(minutes) fits the conditional median, which is what minimises MAE in minutes; its
    # leaf refresh is costlier per round, hence the larger step
    "eta": {
        **_COMMON,
        "objective": "reg:absoluteerror",
        "max_depth": 4,
        "eta": 0.1,
        "min_child_weight": 5.0,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "lambda": 1.0,
    },
}

# The plain reference: XGBoost's own defaults with 400 trees of depth 6 at eta 0.05 and native categoricals, the
# default objective of XGBClassifier / XGBRegressor (on the same log1p target), no tuning, no calibration.
PLAIN: dict[Task, dict[str, Any]] = {
    "sla": {"objective": "binary:logistic", "max_depth": 6, "eta": 0.05, "tree_method": "hist"},
    "eta": {"objective": "reg:squarederror", "max_depth": 6, "eta": 0.05, "tree_method": "hist"},
}
PLAIN_ROUNDS = 400

MAX_ROUNDS = 2000
EARLY_STOPPING_ROUNDS = 50

# the names a /train request may use are listed once, in osml/train_requests.py (the facade checks them)
CANDIDATES: dict[Task, tuple[str, ...]] = {task: train_requests.CANDIDATES[task] for task in TASKS}
TUNED = "xgboost_tuned"


@dataclass(frozen=True)
class Rows:
    """Encoded rows of one task: features, target (SLA 0/1; ETA log1p(minutes)), per-row weights and the
    creation time of each row's order in days (what recency weighting measures age by)."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    days: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def fitting_weights(self, half_life_days: float | None = None) -> np.ndarray:
        """With `half_life_days`, a row's weight halves per half-life of age before the newest row."""
        if half_life_days is None:
            return self.w
        return self.w * 0.5 ** ((self.days.max() - self.days) / half_life_days)

    def dmatrix(self, encoder: FeatureEncoder, half_life_days: float | None = None) -> xgb.DMatrix:
        weight = self.fitting_weights(half_life_days)
        feature_types = ["c"] * encoder.n_categorical + ["q"] * len(encoder.numeric)
        return xgb.DMatrix(self.x, label=self.y, weight=weight, feature_types=feature_types, enable_categorical=True)


# A configuration key that is the pipeline's, not XGBoost's: fitting rows are weighted by recency with this
# half-life (days), so that under drift the newest orders count most; absent = every row counts alike.
HALF_LIFE = "recency_half_life_days"


def fitting_weight(rows: Rows, params: dict[str, Any]) -> float:
    """The total weight a configuration fits on: the row count, less what recency weighting discounts.

    A refit's boosting rounds grow with it as the folds' rounds grew with theirs (training/tune.py), while rows
    that recency weighting all but ignores add none.
    """
    return float(np.sum(rows.fitting_weights(params.get(HALF_LIFE))))


def configuration(params: dict[str, Any], *, rows: int, seed: int) -> dict[str, Any]:
    """Booster parameters: `params` (less the pipeline's own keys) with the machine's thread count and the seed."""
    return {**{k: v for k, v in params.items() if k != HALF_LIFE}, "nthread": openmp_threads(rows), "seed": seed}


def _mae_minutes(predt: np.ndarray, data: xgb.DMatrix) -> tuple[str, float]:
    """Early-stopping metric of ETA boosters: the weighted MAE in minutes, the number the run reports."""
    weights = data.get_weight()
    # float64: an early pseudo-Huber round can predict past float32's exp range (e^89)
    minutes = np.expm1(np.clip(predt.astype(np.float64), 0.0, None))
    errors = np.abs(minutes - np.expm1(data.get_label().astype(np.float64)))
    return "mae_minutes", float(np.average(errors, weights=weights if len(weights) else None))


@dataclass(frozen=True)
class Fitted:
    booster: xgb.Booster
    rounds: int


class OutOfTime(Exception):
    """A fit stopped at its deadline: what it had grown is not a result."""


class _Deadline(xgb.callback.TrainingCallback):
    """Stops boosting after the first round that ends past `deadline` (time.monotonic())."""

    def __init__(self, deadline: float) -> None:
        super().__init__()
        self.deadline = deadline
        self.reached = False

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        self.reached = time.monotonic() > self.deadline
        return self.reached


def fit_booster(
    task: Task,
    params: dict[str, Any],
    encoder: FeatureEncoder,
    train: Rows,
    *,
    seed: int,
    rounds: int,
    stop_on: Rows | None = None,
    deadline: float | None = None,
) -> Fitted:
    """A booster of at most `rounds` rounds; with `stop_on`, stopped once its score there stops improving
    (AUC for SLA, MAE in minutes for ETA) and cut back to the best round. Raises OutOfTime when a round ends
    past `deadline` (time.monotonic()), so that a time-boxed search keeps its budget."""
    config = configuration(params, rows=len(train), seed=seed)
    dtrain = train.dmatrix(encoder, params.get(HALF_LIFE))
    timer = [] if deadline is None else [_Deadline(deadline)]
    if stop_on is None:
        booster = xgb.train(config, dtrain, num_boost_round=rounds, verbose_eval=False, callbacks=timer)
        _check_time(timer)
        return Fitted(booster, rounds)
    evals = [(stop_on.dmatrix(encoder), "score")]
    if task == "sla":
        booster = xgb.train(
            config | {"eval_metric": "auc"},
            dtrain,
            num_boost_round=rounds,
            evals=evals,
            early_stopping_rounds=EARLY_STOPPING_ROUNDS,
            verbose_eval=False,
            callbacks=timer,
        )
    else:
        booster = xgb.train(
            config | {"disable_default_eval_metric": 1},
            dtrain,
            num_boost_round=rounds,
            evals=evals,
            custom_metric=_mae_minutes,
            early_stopping_rounds=EARLY_STOPPING_ROUNDS,
            verbose_eval=False,
            callbacks=timer,
        )
    _check_time(timer)
    best = booster.best_iteration + 1
    return Fitted(booster[:best], best)


def _check_time(timer: list[_Deadline]) -> None:
    if timer and timer[0].reached:
        raise OutOfTime(f"boosting passed its deadline by {time.monotonic() - timer[0].deadline:.1f} s")


def importances(booster: xgb.Booster, encoder: FeatureEncoder) -> np.ndarray:
    """Total gain per encoded column."""
    gain = booster.get_score(importance_type="total_gain")
    return np.array([gain.get(f"f{i}", 0.0) for i in range(len(encoder.columns))])


def select(task: Task, names: tuple[str, ...] | None) -> tuple[str, ...]:
    """The task's candidates, restricted to `names` when given (unknown names are an error, not ignored)."""
    available = CANDIDATES[task]
    if names is None:
        return available
    train_requests.check_candidates(names)
    return tuple(name for name in available if name in names)
