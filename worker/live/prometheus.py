"""Prometheus view of the latest live evaluation (docs/operations.md lists the names).

A collector renders the last report at scrape time, so a scrape never sees half of one evaluation and half of
the next, and a version that left every window stops being exported instead of lingering with old values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from threading import Lock
from typing import Final

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worker.live.accuracy import ETA_TARGET, SLA_TARGET, LiveFigures, ShadowComparison
from worker.live.tracking import RETIRED

_LABELS: Final = ["model_version", "window", "role"]
# a shadow comparison's figures: `model_version` is the one scored, `role` its part in the comparison
_SHADOW_LABELS: Final = [*_LABELS, "production_version", "challenger_version"]
_GAUGES: Final = (
    ("auc", "ROC AUC of slaRisk against realised SLA outcomes"),
    ("brier", "Brier score of slaRisk against realised SLA outcomes"),
    ("calibration_error", "expected calibration error of slaRisk (10 quantile bins)"),
    ("mae_minutes", "mean absolute error of etaMinutes against done_at - predicted_at"),
    ("coverage", "share of the window's predictions whose SLA outcome is known"),
)


@dataclass(frozen=True)
class LiveReport:
    evaluated_at: datetime
    figures: Sequence[LiveFigures]
    roles: Mapping[str, str] = field(default_factory=dict)
    shadow: Sequence[ShadowComparison] = ()

    def role(self, model_version: str) -> str:
        return self.roles.get(model_version, RETIRED)


class LiveAccuracyCollector(Collector):
    def __init__(self) -> None:
        self._lock = Lock()
        self._report: LiveReport | None = None

    def update(self, report: LiveReport) -> None:
        with self._lock:
            self._report = report

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            report = self._report
        if report is None:
            return
        served = [(f, [f.model_version, f.window, report.role(f.model_version)]) for f in report.figures]
        yield from _families("osml_live", "", _LABELS, served)
        shadow = [
            (f, [f.model_version, f.window, role, c.production.model_version, c.challenger.model_version])
            for c in report.shadow
            for role, f in c.by_role()
        ]
        yield from _families(
            "osml_live_shadow", " (challenger and production on the same shadow rows)", _SHADOW_LABELS, shadow
        )
        yield GaugeMetricFamily(
            "osml_live_last_evaluation_timestamp_seconds",
            "when the last successful live evaluation ran (Unix time)",
            value=report.evaluated_at.timestamp(),
        )


def _families(
    prefix: str, note: str, labels: list[str], figures: Sequence[tuple[LiveFigures, list[str]]]
) -> Iterator[Metric]:
    """The figure gauges and the counts behind them, one sample per (figure, its label values)."""
    for name, documentation in _GAUGES:  # each named for the LiveFigures attribute it exports
        gauge = GaugeMetricFamily(f"{prefix}_{name}", documentation + note, labels=labels)
        for figure, values in figures:
            value = getattr(figure, name)
            if value is not None:
                gauge.add_metric(values, value)
        yield gauge
    predictions = GaugeMetricFamily(f"{prefix}_predictions", "predictions made in the window" + note, labels=labels)
    outcomes = GaugeMetricFamily(
        f"{prefix}_outcomes", "predictions of the window with a known outcome" + note, labels=[*labels, "target"]
    )
    for figure, values in figures:
        predictions.add_metric(values, figure.predictions)
        outcomes.add_metric([*values, SLA_TARGET], figure.sla_outcomes)
        outcomes.add_metric([*values, ETA_TARGET], figure.eta_outcomes)
    yield predictions
    yield outcomes


@dataclass
class LiveMetrics:
    """The evaluator's own registry: the latest report and a count of failed evaluations."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    collector: LiveAccuracyCollector = field(default_factory=LiveAccuracyCollector)

    def __post_init__(self) -> None:
        self.registry.register(self.collector)
        self.failures = Counter(
            "osml_live_evaluation_failures", "live evaluations that failed (database or MLflow)", registry=self.registry
        )
