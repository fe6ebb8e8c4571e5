"""Live figures from predictions joined with outcomes: labels as known at the instant, windows, metrics."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from worker.live.accuracy import known_outcomes, live_figures, shadow_comparisons
from worker.live.windows import parse_windows

pytestmark = pytest.mark.unit

AS_OF = pd.Timestamp("2026-06-10T12:00:00Z")
NaT = pd.NaT


def _frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in ("predicted_at", "due_at", "done_at", "canceled_at"):
        values = frame[column] if column in frame else pd.Series(NaT, index=frame.index)
        frame[column] = pd.to_datetime(values, utc=True)
    frame["sla_breached"] = frame.get("sla_breached", np.nan)
    frame["sla_breached"] = frame["sla_breached"].astype("float64")
    return frame


def _row(hours_ago: float, *, due_in_h: float | None, done_in_h: float | None, **extra: object) -> dict[str, object]:
    predicted = AS_OF - timedelta(hours=hours_ago)
    return {
        "order_id": extra.pop("order_id", f"o-{hours_ago}-{due_in_h}-{done_in_h}"),
        "model_version": extra.pop("model_version", "2026-06-01_001"),
        "sla_risk": extra.pop("sla_risk", 0.5),
        "eta_minutes": extra.pop("eta_minutes", 60.0),
        "predicted_at": predicted,
        "due_at": None if due_in_h is None else predicted + timedelta(hours=due_in_h),
        "done_at": None if done_in_h is None else predicted + timedelta(hours=done_in_h),
        **extra,
    }


def test_labels_are_what_was_known_at_the_instant() -> None:
    frame = _frame(
        [
            _row(10, due_in_h=4, done_in_h=2),  # done in time
            _row(10, due_in_h=4, done_in_h=6),  # done late
            _row(10, due_in_h=4, done_in_h=None),  # open, overdue: breached already
            _row(10, due_in_h=20, done_in_h=None),  # open, not due yet: unknown
            _row(10, due_in_h=4, done_in_h=12),  # done only after the instant: overdue at it, so breached
            _row(10, due_in_h=20, done_in_h=12),  # done after the instant, not due then: unknown
            _row(10, due_in_h=4, done_in_h=None, canceled_at=AS_OF - timedelta(hours=1)),  # canceled: excluded
            _row(10, due_in_h=None, done_in_h=3, sla_breached=1.0),  # explicit label, no due date
        ]
    )
    known = known_outcomes(frame, as_of=AS_OF)
    assert known["sla_label"].tolist()[:2] == [0.0, 1.0]
    assert known["sla_label"].iloc[2] == 1.0 and np.isnan(known["sla_label"].iloc[3])
    assert known["sla_label"].iloc[4] == 1.0 and np.isnan(known["sla_label"].iloc[5])
    assert np.isnan(known["sla_label"].iloc[6]) and known["sla_label"].iloc[7] == 1.0
    # remaining time only for orders done by the instant
    assert known["remaining_minutes"].tolist()[:2] == [120.0, 360.0]
    assert known["remaining_minutes"].iloc[2:7].isna().all()
    assert known["remaining_minutes"].iloc[7] == 180.0


def test_figures_match_sklearn_on_the_labelled_rows_of_each_window() -> None:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(400):
        hours_ago = float(rng.uniform(1, 24 * 6))
        done_in_h = float(rng.uniform(0.1, 10))
        rows.append(
            _row(
                hours_ago,
                due_in_h=float(rng.uniform(0.5, 8)),
                done_in_h=done_in_h if done_in_h < hours_ago else None,
                sla_risk=float(rng.uniform()),
                eta_minutes=float(rng.integers(0, 600)),
                model_version="2026-06-01_001" if i % 3 else "2026-06-02_001",
                order_id=f"order-{i}",
            )
        )
    frame = _frame(rows)
    figures = {(f.model_version, f.window): f for f in live_figures(frame, as_of=AS_OF, windows=parse_windows("1d,7d"))}
    assert set(figures) == {(v, w) for v in ("2026-06-01_001", "2026-06-02_001") for w in ("1d", "7d")}

    known = known_outcomes(frame, as_of=AS_OF)
    for (version, window), figure in figures.items():
        span = timedelta(days=1 if window == "1d" else 7)
        rows_in = known[(known["model_version"] == version) & (known["predicted_at"] > AS_OF - span)]
        labelled = rows_in[rows_in["sla_label"].notna()]
        done = rows_in[rows_in["remaining_minutes"].notna()]
        assert figure.predictions == len(rows_in)
        assert figure.coverage == len(labelled) / len(rows_in)
        assert figure.auc == roc_auc_score(labelled["sla_label"], labelled["sla_risk"])
        assert figure.brier == brier_score_loss(labelled["sla_label"], labelled["sla_risk"])
        assert figure.mae_minutes == pytest.approx(
            float(np.mean(np.abs(done["eta_minutes"] - done["remaining_minutes"]))), rel=1e-12
        )
        assert 0 <= figure.calibration_error <= 1  # type: ignore[operator]


def test_predictions_after_the_instant_are_not_scored_and_missing_outcomes_lower_coverage() -> None:
    frame = _frame(
        [
            _row(2, due_in_h=1, done_in_h=0.5),
            _row(2, due_in_h=10, done_in_h=None),  # no outcome yet
            _row(-1, due_in_h=1, done_in_h=0.5),  # predicted after the instant
        ]
    )
    (figure,) = live_figures(frame, as_of=AS_OF, windows=parse_windows("1d"))
    assert figure.predictions == 2
    assert figure.coverage == 0.5
    assert figure.auc is None  # one class only: AUC undefined, not a number that means nothing
    assert figure.brier == 0.25
    assert figure.mae_minutes == 30.0
    assert "auc" not in figure.metrics()


def test_an_order_missing_from_the_outcomes_table_counts_as_not_covered() -> None:
    frame = _frame([_row(2, due_in_h=None, done_in_h=None)])
    (figure,) = live_figures(frame, as_of=AS_OF, windows=parse_windows("1d"))
    assert (figure.predictions, figure.sla_outcomes, figure.eta_outcomes, figure.coverage) == (1, 0, 0, 0.0)
    assert figure.brier is None and figure.mae_minutes is None


def test_a_shadow_comparison_scores_challenger_and_production_on_exactly_the_same_rows() -> None:
    rng = np.random.default_rng(5)
    rows = []
    for i in range(300):
        hours_ago = float(rng.uniform(1, 24 * 6))
        done_in_h = float(rng.uniform(0.1, 10))
        row = _row(
            hours_ago,
            due_in_h=float(rng.uniform(0.5, 8)),
            done_in_h=done_in_h if done_in_h < hours_ago else None,
            order_id=f"order-{i}",
        )
        del row["model_version"], row["sla_risk"], row["eta_minutes"]
        rows.append(
            {
                **row,
                # production changed halfway: the challenger is compared with each production version apart
                "production_version": "2026-06-01_001" if i % 2 else "2026-06-01_002",
                "production_sla_risk": float(rng.uniform()),
                "production_eta_minutes": float(rng.integers(0, 600)),
                "challenger_version": "2026-06-02_001",
                "challenger_sla_risk": float(rng.uniform()),
                "challenger_eta_minutes": float(rng.integers(0, 600)),
            }
        )
    frame = _frame(rows)
    comparisons = shadow_comparisons(frame, as_of=AS_OF, windows=parse_windows("7d"))
    assert [(c.production.model_version, c.challenger.model_version) for c in comparisons] == [
        ("2026-06-01_001", "2026-06-02_001"),
        ("2026-06-01_002", "2026-06-02_001"),
    ]
    known = known_outcomes(frame, as_of=AS_OF)
    for comparison in comparisons:
        shared = known[known["production_version"] == comparison.production.model_version]
        labelled = shared[shared["sla_label"].notna()]
        for role, figure in comparison.by_role():
            assert figure.window == "7d"
            assert (figure.predictions, figure.sla_outcomes) == (len(shared), len(labelled))
            assert figure.auc == roc_auc_score(labelled["sla_label"], labelled[f"{role}_sla_risk"])
            done = shared[shared["remaining_minutes"].notna()]
            expected_mae = float(np.mean(np.abs(done[f"{role}_eta_minutes"] - done["remaining_minutes"])))
            assert figure.mae_minutes == pytest.approx(expected_mae, rel=1e-12)
        assert comparison.challenger.auc != comparison.production.auc  # two sets of answers on one set of rows


def test_no_shadow_rows_make_no_comparison() -> None:
    columns = ("order_id", "production_version", "challenger_version", "production_sla_risk", "challenger_sla_risk")
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    for column in ("predicted_at", "due_at", "done_at", "canceled_at"):
        frame[column] = pd.Series(dtype="datetime64[ns, UTC]")
    frame["sla_breached"] = pd.Series(dtype="float64")
    assert shadow_comparisons(frame, as_of=AS_OF, windows=parse_windows("1d,7d")) == []
