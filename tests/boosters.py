"""Small XGBoost boosters with native categorical splits and missing values, and rows that probe their edges:
what the runtime's own tree readers (osml.runtime.CompiledTrees, osml.treeshap) are checked against."""

from __future__ import annotations

import numpy as np
import xgboost as xgb

FEATURE_TYPES = ["c", "c", "q", "q", "q"]


def categorical_booster(objective: str, *, max_depth: int = 4, rounds: int = 200) -> tuple[xgb.Booster, np.ndarray]:
    """A booster on two categorical columns (40 and 150 codes) and three numeric ones, NaN in three of them, and
    its training matrix."""
    rng = np.random.default_rng(0)
    n = 4000
    x = np.column_stack([rng.integers(0, 40, n), rng.integers(0, 150, n), rng.normal(size=(n, 3))]).astype(np.float32)
    x[::5, 0], x[::7, 2], x[::11, 1] = np.nan, np.nan, np.nan
    y = ((x[:, 0] % 3 == 0) | (x[:, 2] > 0.5) | (x[:, 1] % 7 == 1)).astype(float)
    dtrain = xgb.DMatrix(x, label=y, feature_types=FEATURE_TYPES, enable_categorical=True)
    params = {"objective": objective, "max_depth": max_depth, "max_cat_to_onehot": 1, "max_cat_threshold": 16}
    return xgb.train(params, dtrain, num_boost_round=rounds), x


def odd_rows(x: np.ndarray) -> np.ndarray:
    """600 rows of `x` with codes no split has seen, negative and fractional codes, huge values and infinities."""
    probe = x[300:900].copy()
    probe[::13, 1] = 999  # a code no split has seen
    probe[::17, 0] = -3  # a negative code: in no set
    probe[::19, 1] = 2.7  # not an integer: XGBoost truncates
    probe[::29, 0] = 1e20
    probe[::23, 3] = np.inf
    return probe
