"""Metrics for both tasks and their naive baselines, under the names the runs log (docs/model-card.md)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    brier_score_loss,
    f1_score,
    mean_absolute_error,
    median_absolute_error,
    precision_score,
    recall_score,
    roc_auc_score,
)


def choose_threshold(y_true: np.ndarray, proba: np.ndarray) -> float:
    """The probability cut that maximises F1 on the given (validation) rows."""
    candidates = np.unique(np.round(proba, 4))
    if len(candidates) > 200:
        candidates = np.quantile(proba, np.linspace(0.0, 1.0, 201))
    best, best_f1 = 0.5, -1.0
    for threshold in candidates:
        score = f1_score(y_true, proba >= threshold, zero_division=0)
        if score > best_f1:
            best, best_f1 = float(threshold), float(score)
    return best


def calibration_error(y_true: np.ndarray, proba: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over quantile bins of the prediction: row-weighted |observed - predicted|.

    Equal predictions share a bin, so a constant forecast is judged as one bin (|breach rate - forecast|).
    """
    edges = np.unique(np.quantile(proba, np.linspace(0.0, 1.0, bins + 1)))
    which = np.digitize(proba, edges[1:-1])
    gaps = [
        np.sum(which == b) * abs(float(np.mean(y_true[which == b])) - float(np.mean(proba[which == b])))
        for b in np.unique(which)
    ]
    return float(np.sum(gaps) / max(len(proba), 1))


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, float]:
    predicted = proba >= threshold
    both_classes = len(np.unique(y_true)) == 2
    return {
        "auc": float(roc_auc_score(y_true, proba)) if both_classes else float("nan"),
        "f1": float(f1_score(y_true, predicted, zero_division=0)),
        "precision": float(precision_score(y_true, predicted, zero_division=0)),
        "recall": float(recall_score(y_true, predicted, zero_division=0)),
        "brier": float(brier_score_loss(y_true, proba)),
        "calibration_error": calibration_error(np.asarray(y_true, dtype=float), np.asarray(proba, dtype=float)),
    }


def sla_baseline_metrics(y_train: np.ndarray, y_true: np.ndarray) -> dict[str, float]:
    """Base rate: every order gets the training breach rate (AUC 0.5; F1 as if everyone is flagged)."""
    rate = float(np.mean(y_train))
    return classification_metrics(y_true, np.full(len(y_true), rate), threshold=rate)


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {
        "mae_minutes": float(mean_absolute_error(y_true, predicted)),
        "rmse_minutes": float(np.sqrt(np.mean((np.asarray(y_true) - np.asarray(predicted)) ** 2))),
        "median_ae_minutes": float(median_absolute_error(y_true, predicted)),
    }


def eta_baseline_metrics(y_train: np.ndarray, y_true: np.ndarray) -> dict[str, float]:
    """Median duration: every order gets the training median resolution time."""
    return regression_metrics(y_true, np.full(len(y_true), float(np.median(y_train))))
