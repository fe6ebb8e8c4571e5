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

from worker.live.accuracy import ETA_TARGET, SLA_TARGET, LiveFigures
from worker.live.tracking import RETIRED

_LABELS: Final = ["model_version", "window", "role"]
_GAUGES: Final = (
    ("osml_live_auc", "ROC AUC of slaRisk against realised SLA outcomes", "auc"),
    ("osml_live_brier", "Brier score of slaRisk against realised SLA outcomes", "brier"),
    ("osml_live_calibration_error", "expected calibration error of slaRisk (10 quantile bins)", "calibration_error"),
    ("osml_live_mae_minutes", "mean absolute error of etaMinutes against done_at - predicted_at", "mae_minutes"),
    ("osml_live_coverage", "share of the window's predictions whose SLA outcome is known", "coverage"),
)


@dataclass(frozen=True)
class LiveReport:
    evaluated_at: datetime
    figures: Sequence[LiveFigures]
    roles: Mapping[str, str] = field(default_factory=dict)

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
        for name, documentation, attribute in _GAUGES:
            gauge = GaugeMetricFamily(name, documentation, labels=_LABELS)
            for figure in report.figures:
                value = getattr(figure, attribute)
                if value is not None:
                    gauge.add_metric([figure.model_version, figure.window, report.role(figure.model_version)], value)
            yield gauge
        predictions = GaugeMetricFamily("osml_live_predictions", "predictions made in the window", labels=_LABELS)
        outcomes = GaugeMetricFamily(
            "osml_live_outcomes", "predictions of the window with a known outcome", labels=[*_LABELS, "target"]
        )
        for figure in report.figures:
            labels = [figure.model_version, figure.window, report.role(figure.model_version)]
            predictions.add_metric(labels, figure.predictions)
            outcomes.add_metric([*labels, SLA_TARGET], figure.sla_outcomes)
            outcomes.add_metric([*labels, ETA_TARGET], figure.eta_outcomes)
        yield predictions
        yield outcomes
        yield GaugeMetricFamily(
            "osml_live_last_evaluation_timestamp_seconds",
            "when the last successful live evaluation ran (Unix time)",
            value=report.evaluated_at.timestamp(),
        )


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
