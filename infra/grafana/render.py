"""Draw infra/grafana/dashboards/osml.json with matplotlib from a live Prometheus, where no Grafana is at hand.

Each panel's own PromQL is sent to Prometheus's HTTP API (range queries for time series, instant queries for
stats and bar gauges) and drawn where the dashboard places it, with its thresholds; a panel whose metrics nobody
exports yet says so instead of showing an empty frame.

    python infra/grafana/render.py --prometheus http://127.0.0.1:9090 --out docs/images/operations-dashboard.png
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

DASHBOARD = Path(__file__).resolve().parent / "dashboards" / "osml.json"
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_METRIC = re.compile(r"\bosml_[a-z0-9_]+")
_COLOURS = {"green": "#2e7d32", "yellow": "#f9a825", "red": "#c62828"}


def _expr(target: dict[str, Any], window: str) -> str:
    return str(target["expr"]).replace("$__rate_interval", "1m").replace("$window", window)


def _legend(target: dict[str, Any], labels: dict[str, str]) -> str:
    text = _LEGEND.sub(lambda m: labels.get(m.group(1), ""), str(target.get("legendFormat") or ""))
    return text or ", ".join(f"{k}={v}" for k, v in labels.items()) or "value"


def _query(client: httpx.Client, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.get(path, params=params)
    response.raise_for_status()
    return list(response.json()["data"]["result"])


def _thresholds(panel: dict[str, Any]) -> list[tuple[float, str]]:
    steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
    return [(float(s["value"]), s["color"]) for s in steps if s.get("value") is not None]


def _colour(panel: dict[str, Any], value: float) -> str:
    steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
    colour = "#1565c0"
    for step in steps:
        if step.get("value") is None or value >= float(step["value"]):
            colour = _COLOURS.get(step["color"], colour)
    return colour


def _no_data(ax: Axes, panel: dict[str, Any]) -> None:
    names = sorted({m for t in panel["targets"] for m in _METRIC.findall(t["expr"])})
    ax.text(0.5, 0.5, "no data yet\n" + "\n".join(names), ha="center", va="center", fontsize=7, color="#777777")
    ax.set_xticks([])
    ax.set_yticks([])


def _right_axis_series(panel: dict[str, Any]) -> set[str]:
    """Series the panel's overrides move to a right-hand axis (a second unit, e.g. seconds beside a share)."""
    return {
        str(o["matcher"]["options"])
        for o in panel["fieldConfig"].get("overrides", [])
        if {"id": "custom.axisPlacement", "value": "right"} in o.get("properties", [])
    }


def _timeseries(ax: Axes, panel: dict[str, Any], client: httpx.Client, window: str, start: float, end: float) -> None:
    right = _right_axis_series(panel)
    twin: Axes | None = None
    drawn = 0
    for target in panel["targets"]:
        params = {"query": _expr(target, window), "start": start, "end": end, "step": max(5, int((end - start) / 240))}
        for series in _query(client, "/api/v1/query_range", params):
            points = [(float(t), float(v)) for t, v in series["values"] if v not in ("NaN", "+Inf", "-Inf")]
            if not points:
                continue
            label = _legend(target, series["metric"])
            axis = ax
            if label in right:
                twin = twin or ax.twinx()
                axis = twin
            colour = f"C{drawn % 10}"
            axis.plot(
                [(t - end) / 60 for t, _ in points], [v for _, v in points], linewidth=1, label=label, color=colour
            )
            drawn += 1
    if not drawn:
        _no_data(ax, panel)
        return
    for value, colour in _thresholds(panel):
        ax.axhline(value, color=_COLOURS.get(colour, "#999999"), linestyle="--", linewidth=0.7)
    ax.set_xlabel("minutes", fontsize=6)
    handles, labels = ax.get_legend_handles_labels()
    if twin is not None:
        twin.tick_params(labelsize=6)
        more = twin.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.tick_params(labelsize=6)
    ax.legend(handles, labels, fontsize=5, loc="upper left", framealpha=0.6)


def _instant(ax: Axes, panel: dict[str, Any], client: httpx.Client, window: str, end: float) -> None:
    rows = [
        (_legend(target, series["metric"]), float(series["value"][1]))
        for target in panel["targets"]
        for series in _query(client, "/api/v1/query", {"query": _expr(target, window), "time": end})
    ]
    if not rows:
        _no_data(ax, panel)
        return
    if panel["type"] == "bargauge":
        names, values = zip(*sorted(rows), strict=True)
        ax.barh(names, values, color=[_colour(panel, v) for v in values])
        ax.tick_params(labelsize=6)
        return
    ax.set_xticks([])
    ax.set_yticks([])
    for i, (name, value) in enumerate(sorted(rows)):
        shown = name if value == 1 and "version" in panel["targets"][0]["expr"] else f"{name}: {value:g}"
        ax.text(0.5, 0.75 - 0.3 * i, shown, ha="center", va="center", fontsize=9, weight="bold")


def render(prometheus: str, out: Path, *, window: str, minutes: float) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    figure = plt.figure(figsize=(22, height * 0.42))
    grid = figure.add_gridspec(height, 24, hspace=1.8, wspace=1.2, top=0.96, bottom=0.02)
    end = time.time()
    start = end - minutes * 60
    with httpx.Client(base_url=prometheus, timeout=30) as client:
        for panel in panels:
            pos = panel["gridPos"]
            ax = figure.add_subplot(grid[pos["y"] : pos["y"] + pos["h"], pos["x"] : pos["x"] + pos["w"]])
            title = str(panel["title"]).replace("$window", window)
            if panel["type"] == "row":
                ax.axis("off")
                ax.text(0, 0.6, title, fontsize=11, weight="bold", transform=ax.transAxes)
                continue
            ax.set_title(title, fontsize=8, loc="left")
            if panel["type"] == "timeseries":
                _timeseries(ax, panel, client, window, start, end)
            else:
                _instant(ax, panel, client, window, end)
    figure.suptitle(f"{dashboard['title']} (rendered from Prometheus, last {minutes:g} minutes)", fontsize=13)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--window", default="7d", help="the dashboard's live-accuracy window variable")
    parser.add_argument("--minutes", type=float, default=30.0, help="time range of the time series")
    args = parser.parse_args()
    render(args.prometheus, args.out, window=args.window, minutes=args.minutes)


if __name__ == "__main__":
    main()
