"""osml.treeshap: the vectorised TreeSHAP gives XGBoost's own `pred_contribs` numbers, for every split kind."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from osml.runtime import XGBoostScorer, booster_trees
from osml.treeshap import TreeShap
from tests.boosters import FEATURE_TYPES, categorical_booster, odd_rows

pytestmark = pytest.mark.unit


def _xgboost_contributions(booster: xgb.Booster, rows: np.ndarray) -> np.ndarray:
    data = xgb.DMatrix(rows, feature_types=FEATURE_TYPES, enable_categorical=True)
    return np.asarray(booster.predict(data, pred_contribs=True), dtype=np.float64)


@pytest.mark.parametrize(
    ("objective", "max_depth"),
    [("binary:logistic", 4), ("binary:logistic", 10), ("reg:squarederror", 6), ("reg:absoluteerror", 2)],
)
def test_contributions_and_base_are_xgboosts_on_unknown_codes_and_missing_values(
    objective: str, max_depth: int
) -> None:
    booster, x = categorical_booster(objective, max_depth=max_depth, rounds=60)
    probe = x[300:900].copy()
    probe[::13, 1] = 999  # a code no split has seen
    probe[::23, 3] = 1e6  # beyond every threshold
    values, base = XGBoostScorer(booster).shap(probe)
    expected = _xgboost_contributions(booster, probe)
    np.testing.assert_allclose(values, expected[:, :-1], rtol=1e-4, atol=1e-5)
    assert base == pytest.approx(expected[0, -1], abs=1e-5)


@pytest.mark.parametrize("max_depth", [4, 10])
def test_contributions_add_up_to_the_margin_on_codes_xgboost_would_not_explain(max_depth: int) -> None:
    # negative, fractional and huge codes: a DMatrix refuses them, `inplace_predict` routes them as in no set
    booster, x = categorical_booster("binary:logistic", max_depth=max_depth, rounds=60)
    probe = odd_rows(x)
    values, base = XGBoostScorer(booster).shap(probe)
    margin = booster.inplace_predict(probe, predict_type="margin")
    np.testing.assert_allclose(base + values.sum(axis=1), margin, atol=1e-4)


def test_a_batch_is_explained_as_its_rows_are_one_at_a_time() -> None:
    booster, x = categorical_booster("binary:logistic", rounds=30)
    probe = odd_rows(x)[:50]
    shap = TreeShap(booster_trees(booster), booster.num_features(), 0.0)
    alone = np.vstack([shap(probe[i : i + 1])[0] for i in range(len(probe))])
    np.testing.assert_array_equal(shap(probe)[0], alone)


def test_a_feature_tested_twice_on_a_path_is_one_player() -> None:
    # one numeric feature, deep trees: every path tests it several times, and its share is the whole move
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 2)).astype(np.float32)
    y = np.sin(3 * x[:, 0]) + 0.1 * x[:, 1]
    booster = xgb.train({"max_depth": 6}, xgb.DMatrix(x, label=y), num_boost_round=20)
    values, _ = XGBoostScorer(booster).shap(x[:100])
    expected = np.asarray(booster.predict(xgb.DMatrix(x[:100]), pred_contribs=True))
    np.testing.assert_allclose(values, expected[:, :-1], rtol=1e-4, atol=1e-5)


def test_trees_that_are_one_leaf_go_to_the_base_value() -> None:
    x = np.zeros((50, 3), dtype=np.float32)  # nothing to split on
    booster = xgb.train({"objective": "reg:squarederror"}, xgb.DMatrix(x, label=np.full(50, 7.0)), num_boost_round=5)
    values, base = XGBoostScorer(booster).shap(x[:4])
    expected = np.asarray(booster.predict(xgb.DMatrix(x[:4]), pred_contribs=True))
    assert values.shape == (4, 3) and not values.any()
    assert base == pytest.approx(expected[0, -1], abs=1e-5)


def test_no_rows_give_no_contributions() -> None:
    booster, x = categorical_booster("binary:logistic", rounds=5)
    values, _ = XGBoostScorer(booster).shap(x[:0])
    assert values.shape == (0, x.shape[1])
