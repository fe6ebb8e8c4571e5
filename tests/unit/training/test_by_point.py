"""Evaluation by prediction point: buckets of elapsed time, baselines from the training orders only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.by_point import LABELS, Scored, bucket_of, evaluate, once_per_order

pytestmark = pytest.mark.unit


def test_elapsed_minutes_fall_in_the_documented_buckets() -> None:
    names = bucket_of(np.array([0.0, 0.5, 60.0, 61.0, 480.0, 1440.0, 4320.0, 10080.0, 10081.0]))
    assert [LABELS[n] for n in names] == [
        "at creation", "< 1 h", "< 1 h", "1-8 h", "1-8 h", "8-24 h", "1-3 d", "3-7 d", "> 7 d"
    ]  # fmt: skip


def test_each_order_weighs_one_among_the_rows_given() -> None:
    weights = once_per_order(np.array(["a", "b", "a", "a", "c"], dtype=object))
    assert weights.tolist() == pytest.approx([1 / 3, 1.0, 1 / 3, 1 / 3, 1.0])


def _frame() -> dict[str, pd.Series]:
    # orders 0-3 are the training orders, 4-5 the test orders; each has a creation and a 2-hour snapshot
    ids = np.repeat(np.arange(6), 2).astype(str)
    elapsed = np.tile([0.0, 120.0], 6)
    remaining = np.array([100, 80, 200, 180, 300, 280, 400, 380, 10_000, 9_980, 20_000, 19_980], dtype=float)
    breached = np.array([0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1], dtype=float)
    return {
        "order_id": pd.Series(ids),
        "elapsed_minutes": pd.Series(elapsed),
        "remaining": pd.Series(remaining),
        "breached": pd.Series(breached),
        "sla_open": pd.Series(np.ones(12, dtype=bool)),
    }


def test_baselines_come_from_the_training_orders_of_the_same_age() -> None:
    columns = _frame()
    test = np.arange(8, 12)
    table, metrics = evaluate(
        **columns,
        fitted_on=np.arange(8),
        sla=Scored(test, np.full(4, 0.9)),
        eta=Scored(test, columns["remaining"].to_numpy()[test]),  # a perfect ETA model
    )
    # the training medians: (200 + 300) / 2 at creation, (180 + 280) / 2 at 2 hours; the test orders' huge
    # remaining times never move them
    creation = abs(10_000 - 250) / 2 + abs(20_000 - 250) / 2
    two_hours = abs(9_980 - 230) / 2 + abs(19_980 - 230) / 2
    assert metrics["point_creation_eta_baseline_mae_minutes"] == pytest.approx(creation)
    assert metrics["point_1h_8h_eta_baseline_mae_minutes"] == pytest.approx(two_hours)
    assert metrics["point_mid_life_eta_mae_minutes"] == pytest.approx(0.0)
    assert metrics["point_1h_8h_sla_baseline_breach_rate"] == pytest.approx(0.5)
    assert metrics["point_1h_8h_sla_breach_rate"] == pytest.approx(1.0)
    assert list(table["point"]) == [LABELS[n] for n in LABELS]
    assert dict(zip(table["point"], table["eta_orders"], strict=True))["1-8 h"] == 2


def test_snapshots_whose_breach_is_known_are_left_out_of_the_sla_baseline() -> None:
    columns = _frame()
    known = np.zeros(12, dtype=bool)
    known[[3, 7]] = True  # the breached training orders' 2-hour snapshots: the rule already answers them
    columns["sla_open"] = pd.Series(~known)
    test = np.arange(8, 12)
    _, metrics = evaluate(
        **columns, fitted_on=np.arange(8), sla=Scored(test, np.full(4, 0.9)), eta=Scored(test, np.zeros(4))
    )
    assert metrics["point_1h_8h_sla_baseline_breach_rate"] == pytest.approx(0.0)
    assert metrics["point_creation_sla_baseline_breach_rate"] == pytest.approx(0.5)
