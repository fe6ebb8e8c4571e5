"""Choices on the time folds: out-of-fold scores, the refits' rounds, the time-boxed search and the selection rule."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from osml.runtime import FeatureEncoder
from training.candidates import DEFAULTS, HALF_LIFE, PLAIN, PLAIN_ROUNDS, OutOfTime, Rows, Task
from training.data.synthetic import generate
from training.features import build_training_frame
from training.split import time_split
from training.tune import Assessment, FoldRows, assess, search

pytestmark = pytest.mark.unit


def _folds(task: Task, orders: int = 1500) -> tuple[tuple[FoldRows, ...], float]:
    frame = build_training_frame(generate(orders=orders, seed=5, drift=1.0))
    split = time_split(frame.created_at, test_size=0.2, groups=frame.order_id)
    target = (frame.sla if task == "sla" else np.log1p(frame.eta)).to_numpy(dtype=float)
    days = frame.created_at.astype("int64").to_numpy() / 86_400e9
    folds = []
    for fold in split.folds:
        encoder = FeatureEncoder.fit(frame.features.iloc[fold.fit], schema_version="3")
        x = encoder.encode(frame.features)

        def rows(block: np.ndarray, x: np.ndarray = x) -> Rows:
            kept = block[np.isfinite(target[block])]
            return Rows(x[kept], target[kept], np.ones(len(kept)), days[kept])

        folds.append(FoldRows(encoder, rows(fold.fit), rows(fold.score)))
    return tuple(folds), float(np.ptp(days[split.before_test]))


@pytest.mark.parametrize("task", ["sla", "eta"])
def test_assessment_scores_every_fold_and_grows_rounds_with_rows(task: Task) -> None:
    folds, _ = _folds(task)
    result = assess(task, DEFAULTS[task], folds, seed=0)
    assert len(result.values) == len(folds) == len(result.predictions) == 3
    assert [len(p) for p in result.predictions] == [len(f.score) for f in folds]
    if task == "sla":
        assert 0.5 < result.score <= 1.0 and result.validation == result.values[-1]
    else:  # better than the median duration on every fold: a ratio below one
        assert all(v < b for v, b in zip(result.values, result.baselines, strict=True)) and -1 < result.score < 0
    assert result.fold_weights == tuple(float(f.fit.w.sum()) for f in folds)
    fit = folds[-1].fit
    doubled = Rows(fit.x, fit.y, 2 * fit.w, fit.days)  # twice the weight: 2^growth times the rounds
    assert result.rounds(doubled) == pytest.approx(2**result.rounds_growth * result.rounds(fit), abs=1)
    assert result.rounds(doubled) >= result.rounds(fit)


def _found(weights: tuple[float, ...], rounds: tuple[int, ...]) -> Assessment:
    n = len(weights)
    return Assessment("sla", {}, (0.8,) * n, (1.0,) * n, (np.zeros(1),) * n, 0.0, weights, rounds)


def test_refit_rounds_follow_the_growth_the_folds_show() -> None:
    square_root = _found((1_000.0, 2_000.0, 4_000.0), (100, 141, 200))
    assert square_root.rounds_growth == pytest.approx(0.5, abs=0.01)
    assert square_root.rounds_at(16_000.0) == pytest.approx(400, abs=3)  # not 800, as in proportion


def test_rounds_that_shrink_over_the_folds_keep_their_mean() -> None:
    shrinking = _found((30_000.0, 45_000.0, 60_000.0), (1_254, 647, 498))  # the ETA folds of 100,000 orders
    assert shrinking.rounds_growth == 0.0
    assert shrinking.rounds_at(75_000.0) == shrinking.rounds_at(60_000.0) == 800


def test_rounds_grow_at_most_in_proportion_and_as_such_when_the_folds_cannot_tell() -> None:
    faster = _found((1_000.0, 2_000.0), (100, 400))  # faster than the rows: capped at proportional
    assert faster.rounds_growth == 1.0 and faster.rounds_at(4_000.0) == round((400 + 800) / 2)
    assert _found((1_000.0,), (100,)).rounds_at(3_000.0) == 300  # one fold
    assert _found((1_000.0, 1_000.0), (90, 110)).rounds_growth == 1.0  # folds of one weight


def test_a_fit_past_its_deadline_is_no_result() -> None:
    folds, _ = _folds("eta")
    with pytest.raises(OutOfTime):
        assess("eta", DEFAULTS["eta"], folds, seed=0, deadline=time.monotonic())
    assert assess("eta", DEFAULTS["eta"], folds, seed=0, deadline=time.monotonic() + 600).fold_rounds


def test_fixed_rounds_without_early_stopping_are_kept() -> None:
    folds, _ = _folds("sla")
    result = assess("sla", PLAIN["sla"], folds[-1:], seed=0, rounds=PLAIN_ROUNDS, early_stopping=False)
    assert result.rounds(folds[-1].fit) == PLAIN_ROUNDS


def test_search_starts_from_the_defaults_keeps_its_budget_and_tables_every_trial() -> None:
    folds, span = _folds("eta")
    started = time.monotonic()
    found = search("eta", folds, seconds=6, seed=0, span_days=span)
    elapsed = time.monotonic() - started
    assert found.default.params == DEFAULTS["eta"]  # trial 0 is the `xgboost` candidate itself
    assert found.best.score >= found.default.score
    trials = found.trials
    assert isinstance(trials, pd.DataFrame) and len(trials) >= 2 and list(trials["number"]) == list(range(len(trials)))
    assert {"params_objective", "params_recency_weighting", "user_attrs_fold_values"} <= set(trials.columns)
    # the defaults run in full, any other trial stops at the end of the boosting round that passes the budget
    assert elapsed < max(6, found.default.seconds) + 2


def test_a_zero_budget_runs_the_defaults_only() -> None:
    folds, span = _folds("sla")
    found = search("sla", folds, seconds=0, seed=0, span_days=span)
    assert len(found.trials) == 1 and found.best is found.default


def test_recency_weighting_halves_weight_per_half_life() -> None:
    rows = Rows(np.zeros((3, 1), np.float32), np.zeros(3), np.array([1.0, 1.0, 2.0]), np.array([0.0, 10.0, 20.0]))
    encoder = FeatureEncoder("1", (), ("createdHour",), ())
    np.testing.assert_allclose(rows.dmatrix(encoder, 10.0).get_weight(), [0.25, 0.5, 2.0])
    np.testing.assert_allclose(rows.dmatrix(encoder).get_weight(), [1.0, 1.0, 2.0])
    assert HALF_LIFE not in DEFAULTS["sla"]
