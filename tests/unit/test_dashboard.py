"""The Grafana dashboard and the alert rules against the code and docs/operations.md: every metric they query is
documented, every metric the facade and the live evaluator export is documented, and the panels tile the grid."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from serving.metrics import ServingMetrics
from tests.support import REPO_ROOT
from worker.live.accuracy import LiveFigures
from worker.live.prometheus import LiveMetrics, LiveReport
from worker.live.settings import LiveSettings

pytestmark = pytest.mark.unit

DASHBOARD: dict[str, Any] = json.loads((REPO_ROOT / "infra/grafana/dashboards/osml.json").read_text())
OPERATIONS = (REPO_ROOT / "docs/operations.md").read_text()
METRIC = re.compile(r"\bosml_[a-z0-9_]+")


def _queried() -> set[str]:
    names = {m for p in DASHBOARD["panels"] for t in p.get("targets", []) for m in METRIC.findall(t["expr"])}
    return {re.sub(r"_bucket$", "", n) for n in names}


def _documented() -> set[str]:
    """Names in the first column of docs/operations.md's metric tables (`| `osml_...{labels}` | ...`)."""
    return set(re.findall(r"^\| `(osml_[a-z0-9_]+)", OPERATIONS, re.MULTILINE))


def _exported(registry: CollectorRegistry) -> set[str]:
    return {f"{f.name}_total" if f.type == "counter" else f.name for f in registry.collect()}


def test_every_metric_the_dashboard_queries_is_documented() -> None:
    assert _queried() - _documented() == set()


def test_every_metric_the_alert_rules_query_is_documented() -> None:
    rules = yaml.safe_load((REPO_ROOT / "infra/prometheus/alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    names = {re.sub(r"_bucket$", "", m) for expr in exprs for m in METRIC.findall(expr)}
    assert names and names - _documented() == set()


def test_every_metric_the_facade_and_the_live_evaluator_export_is_documented_and_on_the_dashboard() -> None:
    live = LiveMetrics()
    figures = LiveFigures("2026-06-01_001", "7d", 10, 5, 4, 0.8, 0.2, 0.05, 30.0)
    live.collector.update(LiveReport(evaluated_at=datetime(2026, 6, 1, tzinfo=UTC), figures=[figures]))
    exported = _exported(ServingMetrics().registry) | _exported(live.registry)
    assert exported - _documented() == set()
    # the counts behind a figure and the failure counter are for alerts and drill-down, not panels
    assert exported - _queried() <= {
        "osml_live_predictions",
        "osml_live_outcomes",
        "osml_live_evaluation_failures_total",
        "osml_live_shadow_predictions",
        "osml_live_shadow_outcomes",
    }


def test_the_window_variable_offers_the_evaluators_default_windows() -> None:
    (variable,) = DASHBOARD["templating"]["list"]
    assert variable["name"] == "window"
    assert variable["query"].split(",") == [w.name for w in LiveSettings().windows]


def test_panels_tile_the_grid_without_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
    assert len({p["id"] for p in DASHBOARD["panels"]}) == len(DASHBOARD["panels"])
