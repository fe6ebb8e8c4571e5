"""`osml evaluate-live`: live accuracy per model version from realised outcomes (docs/operations.md).

Once (the default): score as of now (or `--as-of`), log to MLflow and print the figures. With `--loop`: repeat
every OSML_LIVE_INTERVAL_S and serve the figures as Prometheus metrics on OSML_LIVE_METRICS_HOST:PORT.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import orjson
from mlflow import MlflowClient
from prometheus_client import start_http_server

from osml.conventions import tracking_uri
from osml.logs import configure_logging
from worker.live.accuracy import LiveFigures
from worker.live.evaluator import evaluate, run_schedule
from worker.live.outcomes import OutcomesTableError
from worker.live.prometheus import LiveMetrics, LiveReport
from worker.live.settings import LiveSettings


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--as-of", type=_instant, help="evaluate as of this ISO-8601 instant (default: now)")
    parser.add_argument("--loop", action="store_true", help="repeat on a schedule and serve Prometheus metrics")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.epilog = "Settings come from OSML_* environment variables and MLFLOW_TRACKING_URI (see docs/operations.md)."


def _row(figure: LiveFigures, role: str, **more: str) -> dict[str, Any]:
    return {
        "modelVersion": figure.model_version,
        "window": figure.window,
        "role": role,
        **more,
        "coverage": figure.coverage,
        **{k: v for k, v in figure.metrics().items() if k != "coverage"},
    }


def _rows(report: LiveReport) -> list[dict[str, Any]]:
    return [_row(f, report.role(f.model_version)) for f in report.figures]


def _shadow_rows(report: LiveReport) -> list[dict[str, Any]]:
    """Each comparison's two figures, challenger first; `comparedWith` names the other version."""
    return [
        _row(figure, role, comparedWith=other.model_version)
        for c in report.shadow
        for (role, figure), (_, other) in zip(c.by_role(), reversed(c.by_role()), strict=True)
    ]


def _print(report: LiveReport, *, as_json: bool) -> None:
    rows, shadow = _rows(report), _shadow_rows(report)
    if as_json:
        print(orjson.dumps({"asOf": report.evaluated_at.isoformat(), "figures": rows, "shadow": shadow}).decode())
        return
    columns = ("modelVersion", "window", "role", "predictions", "coverage", "auc", "brier", "mae_minutes")
    for title, table in (
        ("served predictions", rows),
        ("shadow: challenger and production on the same orders", shadow),
    ):
        if not table:
            continue
        print(title)
        print("  ".join(f"{c:>14}" for c in columns))
        for row in table:
            cells = (row.get(c) for c in columns)
            print("  ".join(f"{c:>14.4f}" if isinstance(c, float) else f"{c!s:>14}" for c in cells))


def run(args: argparse.Namespace) -> int:
    if args.loop and args.as_of is not None:
        print(
            "osml evaluate-live: --as-of evaluates one past instant; it does not combine with --loop", file=sys.stderr
        )
        return 2
    settings = LiveSettings()
    configure_logging(settings.log_level)
    uri = tracking_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    if not args.loop:
        try:
            report = evaluate(settings, client, uri, as_of=args.as_of or datetime.now(UTC))
        except OutcomesTableError as exc:
            print(f"osml evaluate-live: {exc}", file=sys.stderr)
            return 2
        _print(report, as_json=args.json)
        return 0
    metrics = LiveMetrics()
    start_http_server(settings.live_metrics_port, addr=settings.live_metrics_host, registry=metrics.registry)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_schedule(settings, client, uri, metrics, stop)
    return 0
