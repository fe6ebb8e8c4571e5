"""Figures an engineer wants next to the metrics (logged with `mlflow.log_figure`)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # training runs headless (CLI, MLproject, the facade's job thread)

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve


def roc_pr(y_true: np.ndarray, proba: np.ndarray) -> Figure:
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(10, 4.5))
    fpr, tpr, _ = roc_curve(y_true, proba)
    roc_ax.plot(fpr, tpr, label="model")
    roc_ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
    roc_ax.legend()
    precision, recall, _ = precision_recall_curve(y_true, proba)
    pr_ax.plot(recall, precision, label="model")
    pr_ax.axhline(float(np.mean(y_true)), ls="--", color="grey", label="base rate")
    pr_ax.set(xlabel="recall", ylabel="precision", title="precision-recall (test)")
    pr_ax.legend()
    fig.tight_layout()
    return fig


def calibration(y_true: np.ndarray, proba: np.ndarray, raw: np.ndarray | None = None) -> Figure:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    frac, mean = calibration_curve(y_true, proba, n_bins=10, strategy="quantile")
    ax.plot(mean, frac, "o-", label="calibrated")
    if raw is not None and raw.min() >= 0 and raw.max() <= 1:
        frac_raw, mean_raw = calibration_curve(y_true, raw, n_bins=10, strategy="quantile")
        ax.plot(mean_raw, frac_raw, "s--", alpha=0.6, label="uncalibrated")
    ax.set(xlabel="predicted breach probability", ylabel="observed breach rate", title="calibration (test)")
    ax.legend()
    fig.tight_layout()
    return fig


def confusion(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> Figure:
    matrix = confusion_matrix(y_true, proba >= threshold, labels=[0, 1])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center")
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["met", "breached"],
        yticklabels=["met", "breached"],
        xlabel="predicted",
        ylabel="actual",
        title=f"confusion (test, threshold {threshold:.3f})",
    )
    fig.tight_layout()
    return fig


def feature_importance(names: Sequence[str], importances: np.ndarray) -> Figure:
    order = np.argsort(importances)
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(names) + 1.2))
    ax.barh([names[i] for i in order], importances[order] / max(float(importances.sum()), 1e-12))
    ax.set(xlabel="share of importance", title="feature importance")
    fig.tight_layout()
    return fig


def residuals(y_true: np.ndarray, predicted: np.ndarray) -> Figure:
    fig, (scatter_ax, hist_ax) = plt.subplots(1, 2, figsize=(10, 4.5))
    scatter_ax.scatter(np.log1p(y_true), np.log1p(predicted), s=3, alpha=0.3)
    lim = float(np.log1p(max(float(np.max(y_true)), float(np.max(predicted)))))
    scatter_ax.plot([0, lim], [0, lim], "--", color="grey")
    scatter_ax.set(xlabel="log1p(actual minutes)", ylabel="log1p(predicted minutes)", title="ETA (test)")
    hist_ax.hist(np.log1p(predicted) - np.log1p(y_true), bins=60)
    hist_ax.set(xlabel="log1p(predicted) - log1p(actual)", ylabel="orders", title="residuals (log scale)")
    fig.tight_layout()
    return fig


def by_elapsed(table: pd.DataFrame, model: str, baseline: str, *, ylabel: str, title: str) -> Figure:
    """A metric per prediction point (training/by_point.py), model against its baseline for the same point."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    shown = table.dropna(subset=[model])
    x = np.arange(len(shown))
    ax.plot(x, shown[model], "o-", label="model")
    ax.plot(x, shown[baseline], "s--", color="grey", label="baseline for that point")
    ax.set_xticks(x, list(shown["point"]), rotation=20)
    ax.set(xlabel="elapsed time since creation (prediction point)", ylabel=ylabel, title=title)
    ax.legend()
    fig.tight_layout()
    return fig
