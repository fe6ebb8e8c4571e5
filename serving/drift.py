"""The facade's drift monitor: served rows in a bounded window, PSI against the production pair's training profile.

Recording keeps a reference to each served row and its two answers in a bounded deque: nothing is encoded on the
request path. Only when asked, by GET /monitoring/drift or a /metrics scrape (`osml_drift_psi`,
`osml_drift_window_rows`, docs/operations.md), are the kept rows encoded once into an `osml.profile.DriftWindow`
and their PSI computed. A new pair starts a new window.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from itertools import repeat
from typing import Any

import numpy as np
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from osml.profile import ColumnProfile, DriftWindow
from serving.model_store import ActivePair

WINDOW_ROWS = 10_000  # enough for PSI noise (~bins / rows) far below the 0.1 "stable" line, 1 MB of floats
ROLE = "production"


class DriftMonitor(Collector):
    def __init__(self, size: int = WINDOW_ROWS) -> None:
        self.size = size
        self._lock = threading.Lock()  # /predict/batch records from worker threads
        self._version: str | None = None
        self._columns: list[ColumnProfile] | None = None
        self._encoder: Any = None
        self._entries: deque[tuple[Mapping[str, Any], float, int, float]] = deque(maxlen=size)

    def record(
        self, pair: ActivePair, rows: Sequence[Mapping[str, Any]], sla: Sequence[float], eta: Sequence[int]
    ) -> None:
        """Keep references to the served rows and their answers; encoding waits for a report (off /predict)."""
        stamp = time.time()
        with self._lock:
            if self._version != pair.model_version:
                sla_profile, eta_profile = getattr(pair.sla, "profile", None), getattr(pair.eta, "profile", None)
                self._version, self._entries = pair.model_version, deque(maxlen=self.size)
                # a pair trained before profiles existed has nothing to compare against
                self._columns = (
                    None
                    if sla_profile is None or eta_profile is None
                    else [*sla_profile.columns, sla_profile.output, eta_profile.output]
                )
                self._encoder = getattr(pair.sla, "encoder", None)
            if self._columns is not None:
                self._entries.extend(zip(rows, sla, eta, repeat(stamp), strict=False))

    def _window(self) -> DriftWindow | None:
        """The window as of now: the kept rows encoded once, replayed in serving order."""
        with self._lock:
            columns, encoder, entries = self._columns, self._encoder, list(self._entries)
        if columns is None or encoder is None:
            return None
        window = DriftWindow(columns, self.size)
        if entries:
            features, sla, eta, stamps = zip(*entries, strict=True)
            matrix = np.column_stack([encoder.encode(list(features)), sla, eta])
            times = np.asarray(stamps)
            # rows served by one call share its stamp: replay each call's rows as one block
            starts = np.flatnonzero(np.r_[True, times[1:] != times[:-1]])
            for start, end in zip(starts, [*starts[1:], len(times)], strict=True):
                window.record(matrix[start:end], now=float(times[start]))
        return window

    def report(self) -> dict[str, Any] | None:
        window = self._window()
        if window is None:
            return None
        figures = window.report()
        return {
            "modelVersion": self._version,
            "role": ROLE,
            "windowRows": figures["rows"],
            "windowCapacity": figures["capacity"],
            "windowFrom": figures["from"],
            "windowTo": figures["to"],
            "psi": figures["psi"],
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
