"""Prometheus metrics and the per-request observability middleware (pure ASGI: no per-request task or copy)."""

from __future__ import annotations

import logging
from time import perf_counter
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("osml.serving.access")

_SLA_DIFF_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
_ETA_DIFF_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 240.0, 480.0, 1440.0)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ShadowMetrics:
    """The shadow challenger's series (serving/shadow.py, docs/operations.md), on the facade's registry or the worker's."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.predictions = Counter(
            "osml_shadow_predictions_total",
            "rows scored by the challenger pair beside production, by challenger model version",
            ["model_version"],
            registry=registry,
        )
        self.dropped = Counter(
            "osml_shadow_dropped_total",
            "rows not scored by the challenger because its queue was full (production answered them as usual)",
            registry=registry,
        )
        self.errors = Counter(
            "osml_shadow_errors_total",
            "rows the shadow could not score (stage=predict) or store (stage=store)",
            ["stage"],
            registry=registry,
        )
        self.stored = Counter(
            "osml_shadow_stored_total", "shadow rows written to orders_prediction_shadow", registry=registry
        )
        self.sla_diff = Histogram(
            "osml_shadow_sla_risk_abs_diff",
            "|challenger - production| slaRisk per row scored by both",
            buckets=_SLA_DIFF_BUCKETS,
            registry=registry,
        )
        self.eta_diff = Histogram(
            "osml_shadow_eta_minutes_abs_diff",
            "|challenger - production| etaMinutes per row scored by both",
            buckets=_ETA_DIFF_BUCKETS,
            registry=registry,
        )
        self.challenger = Gauge(
            "osml_challenger_model_version",
            "1 for the model version loaded as the shadow challenger",
            ["model_version"],
            registry=registry,
        )
        self.queued = Gauge("osml_shadow_queue_rows", "rows waiting to be scored by the challenger", registry=registry)


class ServingMetrics:
    """One registry per app, so several apps in one process (tests) never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "osml_http_requests_total",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "osml_http_request_duration_seconds",
            "HTTP request latency by route and status",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "osml_predictions_total", "orders predicted, by model version", ["model_version"], registry=self.registry
        )
        self.active = Gauge(
            "osml_active_model_version",
            "1 for the model version being served",
            ["model_version"],
            registry=self.registry,
        )
        self.load_failures = Counter(
            "osml_model_load_failures_total",
            "failed loads of the pair under the alias production, by model version (retried with backoff)",
            ["model_version"],
            registry=self.registry,
        )
        self.gate_decisions = Counter(
            "osml_promotion_gate_decisions_total",
            "promotion gate decisions (passed, refused, forced) by candidate model version and path (activate, "
            "poll); refused on poll: the alias names a pair this facade does not serve",
            ["outcome", "model_version", "path"],
            registry=self.registry,
        )

        self.shadow = ShadowMetrics(self.registry)

        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def set_active(self, model_version: str) -> None:
        self.active.clear()
        self.active.labels(model_version).set(1)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:  # label lookups take a lock and build tuples: do them once per series
            code = str(status)
            children = self._children[key] = (
                self.requests.labels(method, route, code),
                self.latency.labels(method, route, code),
            )
        children[0].inc()
        children[1].observe(seconds)


class ObservabilityMiddleware:
    """Counts, times and logs every HTTP request. Routes add fields (requestId, orderId, modelVersion) to
    `request.state.log`; they end up in the one log line written per request."""

    def __init__(self, app: ASGIApp, *, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = perf_counter() - start
            route = scope.get("route")
            route_path = getattr(route, "path", "unmatched")
            self.metrics.observe(scope["method"], route_path, status, elapsed)
            if log.isEnabledFor(logging.INFO):
                fields: dict[str, Any] = scope.get("state", {}).get("log") or {}
                log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "latencyMs": round(elapsed * 1000, 3),
                        **fields,
                    },
                )
