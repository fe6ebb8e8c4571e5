"""Evaluation by prediction point: at creation, and over mid-life snapshots in elapsed-time buckets.

Each point stands next to the honest baseline for it, computed on the orders the evaluation model was fitted on
(train + validation), never on the test slice:
- ETA: every test snapshot at that age gets the weighted median remaining time of the training snapshots in the
  same bucket (the orders still open at that age);
- SLA: the weighted breach rate of the training snapshots in the bucket (one number per bucket, so its AUC is 0.5
  inside a bucket; over all mid-life snapshots the bucket rates are the "elapsed-bucket" baseline).

Weights are renormalised inside each point, for the metrics and for the baselines alike, so that every order
with snapshots there counts once. The SLA rows
exclude snapshots whose breach is already known (due date passed under the due-date label rule): the runtime
answers those with 1.0, so scoring the model on them would only flatter it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from osml.metrics import auc
from training.evaluate import regression_metrics, weighted_mean, weighted_median

# (name, lower bound exclusive, upper bound inclusive) in elapsed minutes; creation is elapsed == 0
BUCKETS: Final = (
    ("lt_1h", 0.0, 60.0),
    ("1h_8h", 60.0, 480.0),
    ("8h_24h", 480.0, 1440.0),
    ("1d_3d", 1440.0, 4320.0),
    ("3d_7d", 4320.0, 10080.0),
    ("gt_7d", 10080.0, float("inf")),
)
CREATION: Final = "creation"
MID_LIFE: Final = "mid_life"
# a bucket's label for tables and plots
LABELS: Final = {
    CREATION: "at creation",
    "lt_1h": "< 1 h",
    "1h_8h": "1-8 h",
    "8h_24h": "8-24 h",
    "1d_3d": "1-3 d",
    "3d_7d": "3-7 d",
    "gt_7d": "> 7 d",
    MID_LIFE: "mid-life (all)",
}


def bucket_of(elapsed_minutes: np.ndarray) -> np.ndarray:
    """Each snapshot's point name: `creation` at elapsed 0, else its elapsed-time bucket."""
    elapsed = np.asarray(elapsed_minutes, dtype=float)
    names = np.full(len(elapsed), CREATION, dtype=object)
    for name, low, high in BUCKETS:
        names[(elapsed > low) & (elapsed <= high)] = name
    return names


def once_per_order(order_id: np.ndarray) -> np.ndarray:
    """1 / (rows of the same order among these rows): each order weighs 1 in total."""
    codes, counts = np.unique(order_id.astype(str), return_inverse=True, return_counts=True)[1:]
    return 1.0 / counts[codes]


@dataclass(frozen=True)
class Scored:
    """One task's test predictions: frame positions and the prediction at each (probability or minutes)."""

    rows: np.ndarray
    predicted: np.ndarray


@dataclass(frozen=True)
class PointBaselines:
    """Per point, fitted on training snapshots: the median remaining minutes and the breach rate."""

    median_remaining: dict[str, float]
    breach_rate: dict[str, float]

    @classmethod
    def fit(
        cls,
        points: np.ndarray,
        remaining: np.ndarray,
        breached: np.ndarray,
        order_id: np.ndarray,
        sla_rows: np.ndarray,
    ) -> PointBaselines:
        """`points`, `remaining`, `breached`, `order_id` per training snapshot; `sla_rows` a mask of those whose
        SLA outcome is still open (what the SLA model is scored on). Each order counts once per point."""
        medians: dict[str, float] = {}
        rates: dict[str, float] = {}
        for name in (CREATION, *(b[0] for b in BUCKETS)):
            at = points == name
            eta = at & np.isfinite(remaining)
            if eta.any():
                medians[name] = weighted_median(remaining[eta], once_per_order(order_id[eta]))
            sla = at & sla_rows & np.isfinite(breached)
            if sla.any():
                rates[name] = weighted_mean(breached[sla], once_per_order(order_id[sla]))
        return cls(medians, rates)


def _fallback(table: dict[str, float], name: str) -> float:
    """A bucket no training order reached borrows the nearest older bucket (else the nearest at all)."""
    if name in table:
        return table[name]
    order = [CREATION, *(b[0] for b in BUCKETS)]
    index = order.index(name)
    for other in reversed(order[:index]):
        if other in table:
            return table[other]
    return next(table[o] for o in order if o in table)


def _at(points: np.ndarray, name: str) -> np.ndarray:
    return points != CREATION if name == MID_LIFE else points == name


def evaluate(
    *,
    order_id: pd.Series,
    elapsed_minutes: pd.Series,
    remaining: pd.Series,
    breached: pd.Series,
    sla_open: pd.Series,
    fitted_on: np.ndarray,
    sla: Scored,
    eta: Scored,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """The per-point table (one row per point, creation first, mid-life overall last) and its flat metrics
    (`point_{name}_{metric}`), from the test predictions and baselines fitted on the rows `fitted_on`."""
    points = bucket_of(elapsed_minutes.to_numpy())
    y_eta = remaining.to_numpy(dtype=float)
    y_sla = breached.to_numpy(dtype=float)
    open_sla = sla_open.to_numpy(dtype=bool)
    ids = order_id.to_numpy()
    baselines = PointBaselines.fit(
        points[fitted_on], y_eta[fitted_on], y_sla[fitted_on], ids[fitted_on], open_sla[fitted_on]
    )
    records: list[dict[str, float | str]] = []
    metrics: dict[str, float] = {}
    for name in (CREATION, *(b[0] for b in BUCKETS), MID_LIFE):
        record: dict[str, float | str] = {"point": LABELS[name]}
        eta_at = _at(points[eta.rows], name)
        if eta_at.any():
            rows = eta.rows[eta_at]
            w = once_per_order(ids[rows])
            baseline = np.array([_fallback(baselines.median_remaining, p) for p in points[rows]])
            model = regression_metrics(y_eta[rows], eta.predicted[eta_at], w)["mae_minutes"]
            naive = regression_metrics(y_eta[rows], baseline, w)["mae_minutes"]
            record |= {
                "eta_orders": float(len(np.unique(ids[rows].astype(str)))),
                "eta_mae_minutes": model,
                "eta_baseline_mae_minutes": naive,
                "eta_mae_gain": 1.0 - model / naive if naive > 0 else float("nan"),
            }
        sla_at = _at(points[sla.rows], name)
        if sla_at.any():
            rows = sla.rows[sla_at]
            w = once_per_order(ids[rows])
            rate = np.array([_fallback(baselines.breach_rate, p) for p in points[rows]])
            record |= {
                "sla_orders": float(len(np.unique(ids[rows].astype(str)))),
                "sla_auc": auc(y_sla[rows], sla.predicted[sla_at], w),
                "sla_baseline_auc": auc(y_sla[rows], rate, w),
                "sla_breach_rate": weighted_mean(y_sla[rows], w),
                "sla_baseline_breach_rate": weighted_mean(rate, w),
            }
        records.append(record)
        metrics |= {
            f"point_{name}_{k}": float(v)
            for k, v in record.items()
            if k != "point" and isinstance(v, float) and np.isfinite(v)
        }
    return pd.DataFrame.from_records(records), metrics
