"""Turns a model's score into a calibrated breach probability, fitted on out-of-fold scores (training/tune.py)."""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from osml.runtime import Calibrator

# isotonic needs enough rows of each class to estimate a step function without overfitting; Platt otherwise
MIN_ROWS_FOR_ISOTONIC = 1000
MIN_PER_CLASS_FOR_ISOTONIC = 100


def fit_calibrator(scores: np.ndarray, y_true: np.ndarray, weights: np.ndarray | None = None) -> Calibrator:
    positives = int(np.sum(y_true))
    if len(y_true) >= MIN_ROWS_FOR_ISOTONIC and min(positives, len(y_true) - positives) >= MIN_PER_CLASS_FOR_ISOTONIC:
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, y_true, sample_weight=weights)
        return Calibrator(
            "isotonic",
            x=np.asarray(iso.X_thresholds_, dtype=np.float64),
            y=np.asarray(iso.y_thresholds_, dtype=np.float64),
        )
    platt = LogisticRegression(C=1e6).fit(scores.reshape(-1, 1), y_true, sample_weight=weights)
    return Calibrator("platt", slope=float(platt.coef_[0, 0]), intercept=float(platt.intercept_[0]))
