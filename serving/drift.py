"""The facade's drift monitor: served rows in a bounded window, PSI against the production pair's training profile.

Recording copies each served row (encoded features, slaRisk, etaMinutes) into a preallocated ring buffer
(`osml.profile.DriftWindow`); PSI is computed only when asked, by GET /monitoring/drift or a /metrics scrape
(`osml_drift_psi`, `osml_drift_window_rows`, docs/operations.md). A new pair starts a new window.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from osml.profile import DriftWindow
from serving.model_store import ActivePair

WINDOW_ROWS = 10_000  # enough for PSI noise (~bins / rows) far below the 0.1 "stable" line, 1 MB of floats
ROLE = "production"


class DriftMonitor(Collector):
    def __init__(self, size: int = WINDOW_ROWS) -> None:
        self.size = size
        self._lock = threading.Lock()  # /predict/batch records from worker threads
        self._version: str | None = None
        self._window: DriftWindow | None = None

    def record(
        self, pair: ActivePair, rows: Sequence[Mapping[str, Any]], sla: Sequence[float], eta: Sequence[int]
    ) -> None:
        sla_profile, eta_profile = getattr(pair.sla, "profile", None), getattr(pair.eta, "profile", None)
        if sla_profile is None or eta_profile is None:  # a pair trained before profiles existed: nothing to compare
            return
        encoded = pair.sla.encoder.encode(rows)  # type: ignore[attr-defined]
        matrix = np.column_stack([encoded, sla, eta])
        with self._lock:
            if self._version != pair.model_version or self._window is None:
                columns = [*sla_profile.columns, sla_profile.output, eta_profile.output]
                self._window, self._version = DriftWindow(columns, self.size), pair.model_version
            self._window.record(matrix)

    def report(self) -> dict[str, Any] | None:
        with self._lock:
            if self._window is None:
                return None
            window = self._window.report()
            version = self._version
        return {
            "modelVersion": version,
            "role": ROLE,
            "windowRows": window["rows"],
            "windowCapacity": window["capacity"],
            "windowFrom": window["from"],
            "windowTo": window["to"],
            "psi": window["psi"],
        }

    def collect(self) -> Iterator[GaugeMetricFamily]:
        report = self.report()
        psi = GaugeMetricFamily(
            "osml_drift_psi",
            "population stability index of a feature or output over the served window, against the training profile",
            labels=["model_version", "role", "feature"],
        )
        rows = GaugeMetricFamily("osml_drift_window_rows", "rows in the drift window", labels=["model_version", "role"])
        if report is not None:
            for feature, value in report["psi"].items():
                psi.add_metric([report["modelVersion"], ROLE, feature], value)
            rows.add_metric([report["modelVersion"], ROLE], report["windowRows"])
        yield psi
        yield rows
