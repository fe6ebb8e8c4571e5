"""Live accuracy per model version and window, from predictions joined with their orders' outcomes.

Point in time: an evaluation `as_of` an instant sees only the predictions made by then and only the outcomes known
by then (a `done_at` or `canceled_at` after it is not known yet), so re-running it for a past instant gives what a
run at that instant gave. Labels are the training labels (training/labels.py): breached when done after due, an
explicit `sla_breached` wins, an order still open past its due date has breached, canceled orders are excluded.
The ETA outcome is the remaining time, `done_at - predicted_at` in minutes, for orders done after the prediction.

Shadow comparisons score the challenger and production on the rows of `orders_prediction_shadow`, each row holding
both answers to one request: the same metrics, on exactly the same orders.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss

from osml.metrics import auc
from training.evaluate import calibration_error
from training.labels import sla_breached
from worker.live.windows import Window

SLA_TARGET: Final = "slaRisk"
ETA_TARGET: Final = "etaMinutes"


@dataclass(frozen=True)
class LiveFigures:
    """One model version over one window. Metrics are None where their outcomes are too few to define them."""

    model_version: str
    window: str
    predictions: int
    sla_outcomes: int
    eta_outcomes: int
    auc: float | None
    brier: float | None
    calibration_error: float | None
    mae_minutes: float | None

    @property
    def coverage(self) -> float | None:
        """Share of the window's predictions whose SLA outcome is known."""
        return self.sla_outcomes / self.predictions if self.predictions else None

    def metrics(self) -> dict[str, float]:
        """The defined metrics under the offline names (training logs `auc`, `brier`, ... the same way)."""
        values = {
            "auc": self.auc,
            "brier": self.brier,
            "calibration_error": self.calibration_error,
            "mae_minutes": self.mae_minutes,
            "coverage": self.coverage,
            "predictions": float(self.predictions),
            "sla_outcomes": float(self.sla_outcomes),
            "eta_outcomes": float(self.eta_outcomes),
        }
        return {k: v for k, v in values.items() if v is not None}


def known_outcomes(joined: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """`joined` plus `sla_label` (0/1, NaN unknown) and `remaining_minutes` (NaN unknown), as known at `as_of`."""
    frame = joined.copy()
    for column in ("done_at", "canceled_at"):
        frame[column] = frame[column].where(frame[column] <= as_of)
    frame["sla_label"] = sla_breached(frame, as_of=as_of).to_numpy()
    remaining = (frame["done_at"] - frame["predicted_at"]).dt.total_seconds() / 60.0
    frame["remaining_minutes"] = remaining.where(remaining >= 0)
    return frame


def _score(version: str, window: str, rows: pd.DataFrame) -> LiveFigures:
    labelled = rows[rows["sla_label"].notna()]
    y = labelled["sla_label"].to_numpy(dtype=float)
    p = labelled["sla_risk"].to_numpy(dtype=float)
    done = rows[rows["remaining_minutes"].notna()]
    has_sla = len(labelled) > 0
    live_auc = auc(y, p)  # NaN for a single class: undefined, reported as None
    return LiveFigures(
        model_version=version,
        window=window,
        predictions=len(rows),
        sla_outcomes=len(labelled),
        eta_outcomes=len(done),
        auc=None if math.isnan(live_auc) else live_auc,
        brier=float(brier_score_loss(y, p, labels=[0, 1])) if has_sla else None,
        calibration_error=calibration_error(y, p) if has_sla else None,
        mae_minutes=(
            float(np.mean(np.abs(done["eta_minutes"].to_numpy(float) - done["remaining_minutes"].to_numpy(float))))
            if len(done)
            else None
        ),
    )


def _windowed(
    joined: pd.DataFrame, *, as_of: pd.Timestamp, windows: Sequence[Window]
) -> Iterator[tuple[Window, pd.DataFrame]]:
    """Each window's rows, with their outcomes as known at `as_of`."""
    known = known_outcomes(joined[joined["predicted_at"] <= as_of], as_of=as_of)
    for window in windows:
        yield window, known[known["predicted_at"] > as_of - window.span]


def live_figures(joined: pd.DataFrame, *, as_of: pd.Timestamp, windows: Sequence[Window]) -> list[LiveFigures]:
    """Figures per (model version, window), for every version with a prediction in the window."""
    figures = []
    for window, in_window in _windowed(joined, as_of=as_of, windows=windows):
        for version, rows in in_window.groupby("model_version", sort=True):
            figures.append(_score(str(version), window.name, rows))
    return figures


@dataclass(frozen=True)
class ShadowComparison:
    """A challenger and the production pair it shadowed, over one window, scored on the same rows."""

    challenger: LiveFigures
    production: LiveFigures

    def by_role(self) -> tuple[tuple[str, LiveFigures], tuple[str, LiveFigures]]:
        return ("challenger", self.challenger), ("production", self.production)


def _answers_of(rows: pd.DataFrame, role: str) -> pd.DataFrame:
    """The shadow rows with one role's answers under the names `_score` reads."""
    return rows.rename(columns={f"{role}_sla_risk": "sla_risk", f"{role}_eta_minutes": "eta_minutes"})


def shadow_comparisons(
    joined: pd.DataFrame, *, as_of: pd.Timestamp, windows: Sequence[Window]
) -> list[ShadowComparison]:
    """Per window and (production, challenger) pair of versions: both scored on the shadow rows they share."""
    comparisons = []
    for window, in_window in _windowed(joined, as_of=as_of, windows=windows):
        pairs = in_window.groupby(["production_version", "challenger_version"], sort=True)
        for (production, challenger), rows in pairs:
            comparisons.append(
                ShadowComparison(
                    challenger=_score(str(challenger), window.name, _answers_of(rows, "challenger")),
                    production=_score(str(production), window.name, _answers_of(rows, "production")),
                )
            )
    return comparisons
