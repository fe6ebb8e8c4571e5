"""Choices made on the time folds (training/split.py): a configuration's out-of-fold score and boosting rounds,
and the time-boxed hyper-parameter search (Optuna, TPE) over XGBoost configurations.

A fold fits on the past and scores the block right after it, as the served model will meet the future. SLA is
scored by AUC; ETA by MAE in minutes relative to the fold's median-duration baseline (so folds with longer or
shorter orders weigh alike). Rounds are found by early stopping on each fold. A refit's rounds follow the growth
the folds show: b, the slope of log rounds over log fitting weight through the folds (weight:
candidates.fitting_weight), kept within [0, 1]; each fold's rounds are carried to the refit's weight as
rounds * (weight / fold weight)^b and averaged. With b = 1 that is rounds in proportion to the weight. The folds
decide it: with the default configurations, the UCI log's folds keep rounds growing at least as fast as the rows
(b = 1), while on 100,000 synthetic orders they grow much slower (SLA) or not at all (ETA), where rounds in
proportion made the refits two to three times longer than any fold had found useful.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd

from osml.metrics import auc
from osml.runtime import FeatureEncoder
from training.candidates import (
    DEFAULTS,
    HALF_LIFE,
    MAX_ROUNDS,
    OutOfTime,
    Rows,
    Task,
    fit_booster,
    fitting_weight,
)
from training.evaluate import weighted_median

# The search's default budget (both tasks together): tens of configurations on tens of thousands of orders on two
# cores, and a bounded share of a run that must finish in minutes.
DEFAULT_TUNE_SECONDS = 60.0


@dataclass(frozen=True)
class FoldRows:
    """One fold of one task, encoded with a vocabulary of its own fitting rows."""

    encoder: FeatureEncoder
    fit: Rows
    score: Rows


@dataclass(frozen=True)
class Assessment:
    """A configuration scored on the folds (in time order; the last one scores the validation block)."""

    task: Task
    params: dict[str, Any]
    values: tuple[float, ...]  # per fold: AUC (SLA) or MAE in minutes (ETA)
    baselines: tuple[float, ...]  # per fold: the median-duration MAE (ETA), 1.0 for SLA
    predictions: tuple[np.ndarray, ...]  # per fold: raw predictions on its score block
    seconds: float
    fold_weights: tuple[float, ...]  # per fold: its fitting weight (candidates.fitting_weight)
    fold_rounds: tuple[int, ...]  # per fold: the rounds early stopping kept (or the fixed count)

    @property
    def score(self) -> float:
        """Higher is better: mean fold AUC, or minus the mean fold MAE as a share of its baseline."""
        ratios = [value / baseline for value, baseline in zip(self.values, self.baselines, strict=True)]
        return float(np.mean(ratios)) if self.task == "sla" else -float(np.mean(ratios))

    @property
    def validation(self) -> float:
        """The last fold's AUC or MAE in minutes (the validation block)."""
        return self.values[-1]

    @property
    def rounds_growth(self) -> float:
        """The exponent b of rounds ~ weight^b through the folds (least squares on logs), within [0, 1]; 1 (rounds
        in proportion to the weight) when the folds cannot tell: a single fold, or folds of one weight."""
        log_w = np.log(self.fold_weights)
        if len(log_w) < 2 or np.ptp(log_w) == 0:
            return 1.0
        slope = np.polyfit(log_w, np.log(self.fold_rounds), 1)[0]
        return float(np.clip(slope, 0.0, 1.0))

    def rounds_at(self, weight: float) -> int:
        """Boosting rounds for a refit on `weight` units of fitting weight: every fold's rounds carried there by
        the growth law, averaged."""
        carried = np.asarray(self.fold_rounds) * (weight / np.asarray(self.fold_weights)) ** self.rounds_growth
        return int(np.clip(round(float(np.mean(carried))), 1, 2 * MAX_ROUNDS))

    def rounds(self, rows: Rows) -> int:
        """Boosting rounds for a refit on `rows`."""
        return self.rounds_at(fitting_weight(rows, self.params))

    def rounds_params(self) -> dict[str, str | float]:
        """What a candidate's run records of how its refits' rounds were found."""
        return {"fold_rounds": ",".join(map(str, self.fold_rounds)), "rounds_growth": round(self.rounds_growth, 4)}


def fold_value(task: Task, rows: Rows, predicted: np.ndarray) -> float:
    if task == "sla":
        return auc(rows.y, predicted, rows.w)
    minutes = np.clip(np.expm1(predicted), 0.0, None)
    return float(np.average(np.abs(minutes - np.expm1(rows.y)), weights=rows.w))


def _baseline(task: Task, fold: FoldRows) -> float:
    if task == "sla":
        return 1.0
    median = np.expm1(weighted_median(fold.fit.y, fold.fit.w))
    return float(np.average(np.abs(median - np.expm1(fold.score.y)), weights=fold.score.w))


def assess(
    task: Task,
    params: dict[str, Any],
    folds: tuple[FoldRows, ...],
    *,
    seed: int,
    rounds: int = MAX_ROUNDS,
    early_stopping: bool = True,
    after_fold: Callable[[int, float], None] = lambda _i, _value: None,
    deadline: float | None = None,
) -> Assessment:
    """Fit on every fold (early stopping on its score block unless `early_stopping` is off) and score it.

    `after_fold(i, value)` may raise to abandon the configuration (pruning, budget); a fit still boosting at
    `deadline` (time.monotonic()) raises candidates.OutOfTime.
    """
    started = time.perf_counter()
    values, baselines, predictions = [], [], []
    weights, kept_rounds = [], []
    for i, fold in enumerate(folds):
        fitted = fit_booster(
            task,
            params,
            fold.encoder,
            fold.fit,
            seed=seed,
            rounds=rounds,
            stop_on=fold.score if early_stopping else None,
            deadline=deadline,
        )
        predicted = np.asarray(fitted.booster.inplace_predict(fold.score.x), dtype=np.float64)
        values.append(fold_value(task, fold.score, predicted))
        baselines.append(_baseline(task, fold))
        weights.append(fitting_weight(fold.fit, params))
        kept_rounds.append(fitted.rounds)
        predictions.append(predicted)
        after_fold(i, values[-1] / baselines[-1])
    return Assessment(
        task,
        params,
        tuple(values),
        tuple(baselines),
        tuple(predictions),
        time.perf_counter() - started,
        tuple(weights),
        tuple(kept_rounds),
    )


def _space(task: Task, trial: optuna.Trial, span_days: float) -> dict[str, Any]:
    """The searched configuration: ranges wide enough for small and large data, and holding the defaults.

    Recency weighting is searched as a half-life relative to `span_days` (the rows before the test slice), so
    the same range fits a three-month export and a thirteen-year one.
    """
    params: dict[str, Any] = {
        key: value for key, value in DEFAULTS[task].items() if key not in _SEARCHED and key != "objective"
    }
    if task == "sla":
        params["objective"] = "binary:logistic"
    else:
        params["objective"] = trial.suggest_categorical(
            "objective", ["reg:absoluteerror", "reg:quantileerror", "reg:pseudohubererror", "reg:squarederror"]
        )
        if params["objective"] == "reg:quantileerror":
            params["quantile_alpha"] = trial.suggest_float("quantile_alpha", 0.3, 0.7)
    params["max_depth"] = trial.suggest_int("max_depth", 2, 10)
    params["eta"] = trial.suggest_float("eta", 0.02, 0.3, log=True)
    params["min_child_weight"] = trial.suggest_float("min_child_weight", 0.5, 100.0, log=True)
    params["subsample"] = trial.suggest_float("subsample", 0.5, 1.0)
    params["colsample_bytree"] = trial.suggest_float("colsample_bytree", 0.4, 1.0)
    params["lambda"] = trial.suggest_float("lambda", 0.1, 100.0, log=True)
    if trial.suggest_categorical("recency_weighting", [False, True]):
        params[HALF_LIFE] = span_days * trial.suggest_float("half_life_share", 0.05, 2.0, log=True)
    return params


_SEARCHED = frozenset({"max_depth", "eta", "min_child_weight", "subsample", "colsample_bytree", "lambda"})


def _start_points(task: Task) -> list[dict[str, Any]]:
    """The defaults first (so the search can only improve on them), then a deep, unregularised configuration,
    then the defaults with the newest half of the span weighing most."""
    defaults: dict[str, Any] = {key: value for key, value in DEFAULTS[task].items() if key in _SEARCHED}
    deep: dict[str, Any] = {
        "max_depth": 6,
        "eta": 0.05,
        "min_child_weight": 1.0,
        "subsample": 1.0,
        "colsample_bytree": 1.0,
    }
    if task == "eta":
        defaults["objective"] = DEFAULTS["eta"]["objective"]
        deep["objective"] = "reg:absoluteerror"
    defaults |= {"recency_weighting": False}
    deep |= {"lambda": 1.0, "recency_weighting": False}
    return [defaults, deep, defaults | {"recency_weighting": True, "half_life_share": 0.5}]


@dataclass(frozen=True)
class Search:
    default: Assessment  # trial 0: the `xgboost` candidate
    best: Assessment  # the `xgboost_tuned` candidate
    trials: pd.DataFrame  # one row per trial: state, score, parameters, folds, rounds, seconds


def search(task: Task, folds: tuple[FoldRows, ...], *, seconds: float, seed: int, span_days: float) -> Search:
    """TPE over `_space` for `seconds` (the defaults always run in full first; a configuration still running
    when the time is up is abandoned at the end of its current boosting round), with median pruning between
    folds."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=6),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0),
    )
    for point in _start_points(task):
        study.enqueue_trial(point)
    assessed: dict[int, Assessment] = {}
    deadline = time.monotonic() + seconds
    sign = 1.0 if task == "sla" else -1.0

    def objective(trial: optuna.Trial) -> float:
        def after_fold(i: int, value: float) -> None:
            trial.report(sign * value, i)
            if trial.number == 0:
                return
            if trial.should_prune():
                raise optuna.TrialPruned()
            if i < len(folds) - 1 and time.monotonic() > deadline:
                raise optuna.TrialPruned("out of time")

        params = _space(task, trial, span_days)
        try:  # the defaults run in full whatever the budget; any other trial stops with it
            result = assess(
                task, params, folds, seed=seed, after_fold=after_fold, deadline=None if trial.number == 0 else deadline
            )
        except OutOfTime as exc:
            raise optuna.TrialPruned("out of time") from exc
        assessed[trial.number] = result
        trial.set_user_attr("fold_values", [round(v, 6) for v in result.values])
        trial.set_user_attr("fold_rounds", list(result.fold_rounds))
        return result.score

    study.optimize(objective, n_trials=1)  # the defaults, whatever the budget
    remaining = deadline - time.monotonic()
    if remaining > 0:
        study.optimize(objective, timeout=remaining)
    trials = study.trials_dataframe(attrs=("number", "state", "value", "duration", "params", "user_attrs"))
    trials = trials[trials["state"] != "WAITING"].reset_index(drop=True)  # start points the budget never reached
    return Search(assessed[0], assessed[study.best_trial.number], trials)
