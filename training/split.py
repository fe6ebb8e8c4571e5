"""Time-ordered split: train | validation | test, oldest to newest (never by row at random)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TimeSplit:
    """Positional indices into the frame, each block in creation order."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def time_split(
    created_at: pd.Series,
    *,
    test_size: float,
    validation_size: float | None = None,
    tie_breaker: pd.Series | None = None,
) -> TimeSplit:
    """Test = the newest `test_size` share of rows; validation = the `validation_size` share just before it
    (default: a fifth of the rows before the test slice).

    Validation picks the model, the decision threshold and the calibration, so the test slice is touched once.
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be between 0 and 1 (exclusive), got {test_size}")
    n = len(created_at)
    keys = [created_at.reset_index(drop=True)]
    if tie_breaker is not None:
        keys.append(tie_breaker.astype(str).reset_index(drop=True))
    order = (
        pd.DataFrame({f"k{i}": k for i, k in enumerate(keys)})
        .sort_values([f"k{i}" for i in range(len(keys))], kind="stable")
        .index.to_numpy()
    )
    n_test = max(1, round(n * test_size))
    n_before = n - n_test
    n_val = round(n_before * 0.2) if validation_size is None else round(n * validation_size)
    if n_before - n_val < 2 or n_val < 1:
        raise ValueError(f"{n} rows are too few for test_size={test_size}: need rows for train, validation and test")
    return TimeSplit(
        train=order[: n_before - n_val], validation=order[n_before - n_val : n_before], test=order[n_before:]
    )
