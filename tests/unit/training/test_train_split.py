"""Time-ordered split and the metric helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.evaluate import (
    calibration_error,
    choose_threshold,
    classification_metrics,
    eta_baseline_metrics,
    regression_metrics,
    sla_baseline_metrics,
    weighted_median,
)
from training.split import time_split

pytestmark = pytest.mark.unit


def _shuffled_times(n: int, seed: int = 0) -> pd.Series:
    times = pd.date_range("2026-01-01", periods=n, freq="37min", tz="UTC")
    return pd.Series(np.random.default_rng(seed).permutation(times))


def test_blocks_are_ordered_in_time_and_partition_the_rows() -> None:
    created = _shuffled_times(1000)
    split = time_split(created, test_size=0.2)
    train, val, test = (created.iloc[b] for b in (split.train, split.validation, split.test))
    assert train.max() < val.min() and val.max() < test.min()
    assert len(test) == 200 and len(val) == 160 and len(train) == 640
    assert sorted(np.concatenate([split.train, split.validation, split.test])) == list(range(1000))
    assert list(test) == sorted(test)  # each block in creation order


def test_explicit_validation_size() -> None:
    split = time_split(_shuffled_times(100), test_size=0.3, validation_size=0.1)
    assert (len(split.train), len(split.validation), len(split.test)) == (60, 10, 30)


def test_ties_in_time_are_broken_by_the_order_id_deterministically() -> None:
    created = pd.Series([pd.Timestamp("2026-01-01", tz="UTC")] * 10)
    ids = pd.Series([f"OS-{i}" for i in (5, 3, 9, 0, 1, 8, 2, 7, 4, 6)])
    split = time_split(created, test_size=0.2, groups=ids)
    assert sorted(ids.iloc[split.test]) == ["OS-8", "OS-9"]


def test_folds_expand_over_the_past_and_end_with_the_validation_block() -> None:
    created = _shuffled_times(1000)
    split = time_split(created, test_size=0.2, folds=3)
    assert len(split.folds) == 3
    np.testing.assert_array_equal(split.folds[-1].score, split.validation)
    np.testing.assert_array_equal(split.folds[-1].fit, split.train)
    for earlier, later in zip(split.folds, split.folds[1:], strict=False):
        assert len(later.fit) == len(earlier.fit) + len(earlier.score)  # the next fold fits on what this one scored
    for fold in split.folds:
        assert created.iloc[fold.fit].max() < created.iloc[fold.score].min()  # fit on the past only
        assert len(fold.score) == len(split.validation)
    assert set(split.before_test) == set(split.train) | set(split.validation)
    assert sorted(split.everything) == list(range(1000))


def test_an_orders_rows_never_straddle_two_blocks() -> None:
    # several snapshot rows per order, created at different instants: blocks follow the order's first row
    rng = np.random.default_rng(1)
    orders = pd.Series([f"OS-{i:03d}" for i in rng.integers(0, 120, size=600)])
    created = pd.Series(pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 10**6, 600), "s"))
    split = time_split(created, test_size=0.2, groups=orders, folds=3)
    blocks = [split.test, *(fold.score for fold in split.folds), split.folds[0].fit]
    owners = [set(orders.iloc[block]) for block in blocks]
    for i, mine in enumerate(owners):
        for other in owners[i + 1 :]:
            assert not mine & other
    assert len(set(orders.iloc[split.test])) == round(orders.nunique() * 0.2)  # shares count orders, not rows
    first_seen = created.groupby(orders).min()
    assert first_seen[list(owners[1])].max() < first_seen[list(owners[0])].min()


def test_few_orders_get_fewer_folds() -> None:
    split = time_split(_shuffled_times(12), test_size=0.2, folds=5)
    assert 1 <= len(split.folds) < 5 and all(len(fold.fit) >= 2 for fold in split.folds)


@pytest.mark.parametrize("test_size", [0.0, 1.0, -0.1, 1.5])
def test_test_size_outside_zero_one_is_rejected(test_size: float) -> None:
    with pytest.raises(ValueError, match="test_size"):
        time_split(_shuffled_times(50), test_size=test_size)


def test_too_few_rows_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="too few"):
        time_split(_shuffled_times(3), test_size=0.5)


def test_weighted_metrics_count_each_order_once() -> None:
    # an order split into two half-weight rows counts as much as a single row of it
    y, p = np.array([1.0, 0.0, 1.0, 0.0]), np.array([0.8, 0.3, 0.4, 0.5])
    doubled_y, doubled_p = np.append(y, y[0]), np.append(p, p[0])
    weights = np.array([0.5, 1, 1, 1, 0.5])
    once = classification_metrics(y, p, 0.45)
    assert classification_metrics(doubled_y, doubled_p, 0.45, weights) == pytest.approx(once)
    minutes, predicted = np.array([10.0, 50.0, 70.0]), np.array([20.0, 20.0, 20.0])
    assert regression_metrics(np.append(minutes, 10.0), np.append(predicted, 20.0), np.array([0.5, 1, 1, 0.5])) == (
        pytest.approx(regression_metrics(minutes, predicted))
    )
    assert weighted_median(np.array([1.0, 2.0, 3.0, 4.0])) == 2.5
    assert weighted_median(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 5.0])) == 3.0


def test_threshold_maximises_f1_on_the_given_rows() -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.6, 0.7, 0.8, 0.9])
    threshold = choose_threshold(y, p)
    # flagging >= 0.35 catches every breach with 1 false alarm: F1 = 8/9, the best any cut achieves
    assert threshold == pytest.approx(0.35)


def test_baselines_are_base_rate_and_median_duration() -> None:
    sla = sla_baseline_metrics(np.array([0, 1, 1, 0]), np.array([1, 0, 1, 0]))
    assert sla["auc"] == pytest.approx(0.5) and sla["recall"] == 1.0 and sla["brier"] == pytest.approx(0.25)
    eta = eta_baseline_metrics(np.array([10.0, 20.0, 1000.0]), np.array([20.0, 30.0]))
    assert eta == regression_metrics(np.array([20.0, 30.0]), np.array([20.0, 20.0]))
    assert eta["mae_minutes"] == 5.0 and eta["median_ae_minutes"] == 5.0


def test_calibration_error_is_zero_when_calibrated_and_the_gap_when_shifted() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(50_000)
    y = (rng.random(len(p)) < p).astype(float)
    assert calibration_error(y, p) < 0.01
    assert calibration_error(y, np.clip(p + 0.1, 0, 1)) > 0.08
    constant = np.full(len(y), 0.3)
    assert calibration_error(y, constant) == pytest.approx(abs(float(y.mean()) - 0.3))
