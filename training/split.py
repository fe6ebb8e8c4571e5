"""Time-ordered split: train | validation | test, oldest to newest (never by row at random), and the
expanding-window folds over the rows before the test slice that make every modelling choice.

Everything is cut by order, not by row: an order's rows (one today; several snapshots later) share its block,
and orders are ranked by their earliest `created_at` (ties by order id), so no order straddles two blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DEFAULT_FOLDS = 3


@dataclass(frozen=True)
class Fold:
    """Fit on `fit` (the past), score on `score` (the block right after it): positional row indices."""

    fit: np.ndarray
    score: np.ndarray


@dataclass(frozen=True)
class TimeSplit:
    """Positional indices into the frame, each block in creation order.

    `folds` cover the rows before the test slice; the last fold scores the validation block.
    """

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    folds: tuple[Fold, ...]

    @property
    def before_test(self) -> np.ndarray:
        """Train + validation: what the evaluation model is refit on."""
        return np.concatenate([self.train, self.validation])

    @property
    def everything(self) -> np.ndarray:
        """Every row, test slice included: what the served model is refit on."""
        return np.concatenate([self.train, self.validation, self.test])


def _rows_in_order_blocks(created_at: pd.Series, groups: pd.Series | None) -> tuple[np.ndarray, np.ndarray]:
    """Rows sorted by (order rank, creation time) and, per sorted row, its order's rank (0 = oldest order)."""
    created = created_at.reset_index(drop=True)
    group = (
        pd.Series(np.arange(len(created)).astype(str)) if groups is None else groups.astype(str).reset_index(drop=True)
    )
    first = created.groupby(group, sort=False).transform("min")
    keys = pd.DataFrame({"first": first, "group": group, "created": created})
    order = keys.sort_values(["first", "group", "created"], kind="stable").index.to_numpy()
    sorted_group = group.to_numpy()[order]
    new_order = np.ones(len(order), dtype=bool)
    new_order[1:] = sorted_group[1:] != sorted_group[:-1]
    return order, np.cumsum(new_order) - 1


def time_split(
    created_at: pd.Series,
    *,
    test_size: float,
    validation_size: float | None = None,
    groups: pd.Series | None = None,
    folds: int = DEFAULT_FOLDS,
) -> TimeSplit:
    """Test = the newest `test_size` share of orders; validation = the `validation_size` share just before it
    (default: a fifth of the orders before the test slice); train = everything older.

    `folds` expanding windows over train + validation score equal blocks of orders ending with the validation
    block, each fitted on every order before its block; fewer when the data has too few orders for them.
    `groups` (the order id per row) keeps an order's rows together; without it every row is its own order.
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be between 0 and 1 (exclusive), got {test_size}")
    order, rank = _rows_in_order_blocks(created_at, groups)
    n = int(rank[-1]) + 1 if len(rank) else 0
    n_test = max(1, round(n * test_size))
    n_before = n - n_test
    n_val = round(n_before * 0.2) if validation_size is None else round(n * validation_size)
    if n_before - n_val < 2 or n_val < 1:
        raise ValueError(
            f"{n} orders are too few for test_size={test_size}: need orders for train, validation and test"
        )

    def block(start: int, stop: int) -> np.ndarray:
        return order[(rank >= start) & (rank < stop)]

    n_folds = max(1, min(folds, (n_before - 2) // n_val))  # the first fold still fits on two orders or more
    starts = [n_before - n_val * k for k in range(n_folds, 0, -1)]
    return TimeSplit(
        train=block(0, n_before - n_val),
        validation=block(n_before - n_val, n_before),
        test=block(n_before, n),
        folds=tuple(Fold(fit=block(0, start), score=block(start, start + n_val)) for start in starts),
    )
