"""Metrics for both tasks and their naive baselines (docs/model-card.md names them).

AUC and MAE live in `osml.metrics` (the facade's promotion gate computes them too). Every function takes
optional per-row weights (None = every row counts once), so that an order represented by several rows still
counts once in a metric.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import brier_score_loss, f1_score, precision_score, recall_score

from osml.metrics import auc, mae


def choose_threshold(y_true: np.ndarray, proba: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The probability cut that maximises F1 on the given (validation) rows."""
    candidates = np.unique(np.round(proba, 4))
    if len(candidates) > 200:
        candidates = np.quantile(proba, np.linspace(0.0, 1.0, 201))
    best, best_f1 = 0.5, -1.0
    for threshold in candidates:
        score = f1_score(y_true, proba >= threshold, sample_weight=weights, zero_division=0)
        if score > best_f1:
            best, best_f1 = float(threshold), float(score)
    return best


def calibration_error(
    y_true: np.ndarray, proba: np.ndarray, bins: int = 10, weights: np.ndarray | None = None
) -> float:
    """Expected calibration error over quantile bins of the prediction: weighted |observed - predicted|.

    Equal predictions share a bin, so a constant forecast is judged as one bin (|breach rate - forecast|).
    """
    w = np.ones(len(proba)) if weights is None else np.asarray(weights, dtype=float)
    edges = np.unique(np.quantile(proba, np.linspace(0.0, 1.0, bins + 1)))
    which = np.digitize(proba, edges[1:-1])
    gaps = [
        np.sum(w[which == b])
        * abs(
            float(np.average(y_true[which == b], weights=w[which == b]))
            - float(np.average(proba[which == b], weights=w[which == b]))
        )
        for b in np.unique(which)
    ]
    return float(np.sum(gaps) / max(float(np.sum(w)), 1e-12))


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, threshold: float, weights: np.ndarray | None = None
) -> dict[str, float]:
    predicted = proba >= threshold
    return {
        "auc": auc(y_true, proba, weights),
        "f1": float(f1_score(y_true, predicted, sample_weight=weights, zero_division=0)),
        "precision": float(precision_score(y_true, predicted, sample_weight=weights, zero_division=0)),
        "recall": float(recall_score(y_true, predicted, sample_weight=weights, zero_division=0)),
        "brier": float(brier_score_loss(y_true, proba, sample_weight=weights)),
        "calibration_error": calibration_error(
            np.asarray(y_true, dtype=float), np.asarray(proba, dtype=float), weights=weights
        ),
    }


def weighted_mean(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    return float(np.average(values, weights=weights))


def weighted_median(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The value splitting the weight in halves (the plain median for equal weights)."""
    if weights is None:
        return float(np.median(values))
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(np.asarray(weights, dtype=float)[order])
    half = cumulative[-1] / 2
    low = np.searchsorted(cumulative, half, side="left")
    if np.isclose(cumulative[low], half) and low + 1 < len(order):  # an even split: the midpoint, as np.median
        return float((values[order[low]] + values[order[low + 1]]) / 2)
    return float(values[order[low]])


def sla_baseline_metrics(
    y_train: np.ndarray, y_true: np.ndarray, w_train: np.ndarray | None = None, w_true: np.ndarray | None = None
) -> dict[str, float]:
    """Base rate: every order gets the training breach rate (AUC 0.5; F1 as if everyone is flagged)."""
    rate = weighted_mean(y_train, w_train)
    return classification_metrics(y_true, np.full(len(y_true), rate), threshold=rate, weights=w_true)


def regression_metrics(
    y_true: np.ndarray, predicted: np.ndarray, weights: np.ndarray | None = None
) -> dict[str, float]:
    errors = np.asarray(y_true, dtype=float) - np.asarray(predicted, dtype=float)
    return {
        "mae_minutes": mae(y_true, predicted, weights),
        "rmse_minutes": float(np.sqrt(np.average(errors**2, weights=weights))),
        "median_ae_minutes": weighted_median(np.abs(errors), weights),
    }


def eta_baseline_metrics(
    y_train: np.ndarray, y_true: np.ndarray, w_train: np.ndarray | None = None, w_true: np.ndarray | None = None
) -> dict[str, float]:
    """Median duration: every order gets the training median resolution time."""
    return regression_metrics(y_true, np.full(len(y_true), weighted_median(y_train, w_train)), w_true)
