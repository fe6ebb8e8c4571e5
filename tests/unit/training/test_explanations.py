"""Explanations (osml.runtime `explain`): XGBoost's TreeSHAP, in readable units, adding up to the margin."""

from __future__ import annotations

import numpy as np
import pytest

from osml.runtime import EtaMinutesModel, SlaRiskModel

pytestmark = pytest.mark.unit


def _margins(model: SlaRiskModel | EtaMinutesModel, rows: list[dict[str, object]]) -> np.ndarray:
    booster = model.scorer.booster
    return np.asarray(booster.inplace_predict(model.encoder.encode(rows), predict_type="margin"), dtype=np.float64)


def test_risk_contributions_plus_base_reproduce_the_margin(sla_model: SlaRiskModel, feature_rows) -> None:  # type: ignore[no-untyped-def]
    for k in (1, 3, len(sla_model.encoder.columns)):
        explained = sla_model.explain(feature_rows, k)
        for why, margin in zip(explained, _margins(sla_model, feature_rows), strict=True):
            total = why["base"]["logOdds"] + sum(c["logOdds"] for c in why["contributions"]) + why["rest"]["logOdds"]
            assert total == pytest.approx(margin, abs=1e-4)
            assert why["logOdds"] == pytest.approx(margin, abs=1e-4)
            assert len(why["contributions"]) == k


def test_all_risk_contributions_alone_reproduce_the_margin(sla_model: SlaRiskModel, feature_rows) -> None:  # type: ignore[no-untyped-def]
    everything = len(sla_model.encoder.columns)
    for why, margin in zip(sla_model.explain(feature_rows, everything), _margins(sla_model, feature_rows), strict=True):
        assert why["rest"]["logOdds"] == pytest.approx(0.0, abs=1e-6)
        assert why["base"]["logOdds"] + sum(c["logOdds"] for c in why["contributions"]) == pytest.approx(
            margin, abs=1e-4
        )
        assert {c["feature"] for c in why["contributions"]} == set(sla_model.encoder.columns)


def test_eta_contributions_plus_base_reproduce_the_log_minutes(eta_model: EtaMinutesModel, feature_rows) -> None:  # type: ignore[no-untyped-def]
    explained = eta_model.explain(feature_rows, 3)
    for why, margin in zip(explained, _margins(eta_model, feature_rows), strict=True):
        total = (
            why["base"]["log1pMinutes"]
            + sum(c["log1pMinutes"] for c in why["contributions"])
            + why["rest"]["log1pMinutes"]
        )
        assert total == pytest.approx(margin, abs=1e-4)
        assert why["base"]["minutes"] == pytest.approx(np.expm1(why["base"]["log1pMinutes"]), rel=1e-5, abs=0.1)


def test_contributions_come_largest_first_with_readable_units(sla_model: SlaRiskModel, feature_rows) -> None:  # type: ignore[no-untyped-def]
    why = sla_model.explain(feature_rows[:1], 4)[0]
    sizes = [abs(c["logOdds"]) for c in why["contributions"]]
    assert sizes == sorted(sizes, reverse=True)
    base, calibrate = why["base"], sla_model._readable
    assert base["probability"] == pytest.approx(float(calibrate(np.array([base["logOdds"]]))[0]), abs=1e-4)
    for c in why["contributions"]:
        moved = float(calibrate(np.array([base["logOdds"] + c["logOdds"]]))[0])
        assert c["probabilityPoints"] == pytest.approx(100 * (moved - base["probability"]), abs=0.02)
        # a contribution raising the log-odds never lowers the (monotone) calibrated probability
        assert c["probabilityPoints"] * c["logOdds"] >= -1e-9 or c["probabilityPoints"] == 0


def test_explanations_do_not_change_the_predictions(sla_model: SlaRiskModel, feature_rows) -> None:  # type: ignore[no-untyped-def]
    before = sla_model.predict(feature_rows)
    sla_model.explain(feature_rows, 2)
    np.testing.assert_array_equal(sla_model.predict(feature_rows), before)


def test_no_rows_have_no_explanations(sla_model: SlaRiskModel, eta_model: EtaMinutesModel) -> None:
    assert sla_model.explain([], 3) == []
    assert eta_model.explain([], 3) == []
