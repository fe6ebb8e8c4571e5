"""One live evaluation (read, score, export, log) and the schedule that repeats it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pandas as pd
from mlflow import MlflowClient

from worker.live.accuracy import LiveFigures, ShadowComparison, live_figures, shadow_comparisons
from worker.live.outcomes import read_predictions, read_shadow, with_outcomes
from worker.live.prometheus import LiveMetrics, LiveReport
from worker.live.settings import LiveSettings
from worker.live.tracking import log_live_figures, version_roles

log = logging.getLogger("osml.worker.live")


def score(settings: LiveSettings, *, as_of: datetime) -> tuple[list[LiveFigures], list[ShadowComparison]]:
    """Figures per model version and window, and the shadow comparisons, as of `as_of` (reads both databases; no
    MLflow)."""
    windows = settings.windows
    span = {"since": as_of - max(w.span for w in windows), "until": as_of}
    served = with_outcomes(
        read_predictions(settings.database_url, **span), settings.outcomes_url, settings.outcomes_table
    )
    shadow = with_outcomes(read_shadow(settings.database_url, **span), settings.outcomes_url, settings.outcomes_table)
    instant = pd.Timestamp(as_of)
    return (
        live_figures(served, as_of=instant, windows=windows),
        shadow_comparisons(shadow, as_of=instant, windows=windows),
    )


def evaluate(
    settings: LiveSettings,
    client: MlflowClient,
    tracking_uri: str,
    *,
    as_of: datetime,
    publish: Callable[[LiveReport], None] | None = None,
) -> LiveReport:
    """Score, look up which version is production / challenger, hand the report to `publish` (Prometheus), then
    log it to MLflow: published first, so that a tracking-server outage does not hide the figures."""
    figures, shadow = score(settings, as_of=as_of)
    report = LiveReport(evaluated_at=as_of, figures=figures, roles=version_roles(client), shadow=shadow)
    if publish is not None:
        publish(report)
    log_live_figures(client, tracking_uri, figures, roles=report.roles, evaluated_at=as_of, shadow=shadow)
    return report


def run_schedule(
    settings: LiveSettings, client: MlflowClient, tracking_uri: str, metrics: LiveMetrics, stop: threading.Event
) -> None:
    """Evaluate every `live_interval_s` until `stop`; a failed round is logged and counted, the next one retries."""
    while not stop.is_set():
        try:
            report = evaluate(settings, client, tracking_uri, as_of=datetime.now(UTC), publish=metrics.collector.update)
            log.info("live evaluation done", extra={"figures": len(report.figures)})
        except Exception:  # any failure of a round (database, registry, tracking server): retried next round
            metrics.failures.inc()
            log.exception("live evaluation failed")
        stop.wait(settings.live_interval_s)
