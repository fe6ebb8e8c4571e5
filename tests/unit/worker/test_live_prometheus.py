"""The evaluator's Prometheus exposition: names, labels and values of the latest report only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker.live.accuracy import LiveFigures, ShadowComparison
from worker.live.prometheus import LiveMetrics, LiveReport

pytestmark = pytest.mark.unit

AT = datetime(2026, 6, 10, 12, tzinfo=UTC)


def _figures(version: str, window: str, *, auc: float | None) -> LiveFigures:
    return LiveFigures(
        model_version=version,
        window=window,
        predictions=200,
        sla_outcomes=150,
        eta_outcomes=120,
        auc=auc,
        brier=0.18,
        calibration_error=0.04,
        mae_minutes=95.5,
    )


def _samples(metrics: LiveMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_nothing_is_exported_before_the_first_evaluation() -> None:
    samples = _samples(LiveMetrics())
    assert {name for name, _ in samples} <= {
        "osml_live_evaluation_failures_total",
        "osml_live_evaluation_failures_created",
    }


def test_each_figure_is_a_gauge_labelled_by_version_window_and_role() -> None:
    metrics = LiveMetrics()
    report = LiveReport(
        evaluated_at=AT,
        figures=[_figures("2026-06-01_001", "7d", auc=0.81), _figures("2026-06-02_001", "7d", auc=None)],
        roles={"2026-06-01_001": "production", "2026-06-02_001": "challenger"},
    )
    metrics.collector.update(report)
    samples = _samples(metrics)
    production = (("model_version", "2026-06-01_001"), ("role", "production"), ("window", "7d"))
    challenger = (("model_version", "2026-06-02_001"), ("role", "challenger"), ("window", "7d"))
    assert samples["osml_live_auc", production] == 0.81
    assert ("osml_live_auc", challenger) not in samples  # undefined, not exported as a number
    assert samples["osml_live_brier", challenger] == 0.18
    assert samples["osml_live_calibration_error", production] == 0.04
    assert samples["osml_live_mae_minutes", production] == 95.5
    assert samples["osml_live_coverage", production] == 0.75
    assert samples["osml_live_predictions", production] == 200
    for target, count in (("etaMinutes", 120), ("slaRisk", 150)):
        assert samples["osml_live_outcomes", tuple(sorted((*production, ("target", target))))] == count
    assert samples["osml_live_last_evaluation_timestamp_seconds", ()] == AT.timestamp()


def test_a_version_that_left_every_window_stops_being_exported_and_unknown_ones_are_retired() -> None:
    metrics = LiveMetrics()
    metrics.collector.update(LiveReport(evaluated_at=AT, figures=[_figures("2026-06-01_001", "1d", auc=0.8)]))
    metrics.collector.update(LiveReport(evaluated_at=AT, figures=[_figures("2026-06-02_001", "1d", auc=0.7)]))
    versions = {dict(labels)["model_version"] for name, labels in _samples(metrics) if name == "osml_live_auc"}
    assert versions == {"2026-06-02_001"}
    roles = {dict(labels)["role"] for name, labels in _samples(metrics) if name == "osml_live_auc"}
    assert roles == {"retired"}


def test_a_shadow_comparison_is_exported_per_role_beside_the_served_figures() -> None:
    metrics = LiveMetrics()
    comparison = ShadowComparison(
        challenger=_figures("2026-06-02_001", "7d", auc=0.84), production=_figures("2026-06-01_001", "7d", auc=0.8)
    )
    served = _figures("2026-06-01_001", "7d", auc=0.79)
    roles = {"2026-06-01_001": "production", "2026-06-02_001": "challenger"}
    metrics.collector.update(LiveReport(evaluated_at=AT, figures=[served], roles=roles, shadow=[comparison]))
    samples = _samples(metrics)
    pair = (("challenger_version", "2026-06-02_001"), ("production_version", "2026-06-01_001"))

    def labels(version: str, role: str) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((*pair, ("model_version", version), ("role", role), ("window", "7d"))))

    assert samples["osml_live_shadow_auc", labels("2026-06-02_001", "challenger")] == 0.84
    assert samples["osml_live_shadow_auc", labels("2026-06-01_001", "production")] == 0.8
    assert samples["osml_live_shadow_predictions", labels("2026-06-01_001", "production")] == 200
    # the served figures stay as they were: production on every stored prediction
    served_labels = (("model_version", "2026-06-01_001"), ("role", "production"), ("window", "7d"))
    assert samples["osml_live_auc", served_labels] == 0.79
    assert not any(name == "osml_live_auc" and dict(k)["role"] == "challenger" for name, k in samples)
