"""The metrics both training and the facade's promotion gate compute (docs/model-card.md names them).

Both take optional per-row weights (None = every row counts once), so that an order represented by several
snapshot rows still counts once.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import mean_absolute_error, roc_auc_score


def auc(y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    """ROC AUC, NaN when the rows hold a single class."""
    if len(np.unique(y_true)) < 2:
        return float("nan")
    return float(roc_auc_score(y_true, scores, sample_weight=weights))


def mae(y_true: np.ndarray, predicted: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean absolute error (in the labels' unit: minutes for the ETA)."""
    return float(mean_absolute_error(y_true, predicted, sample_weight=weights))
