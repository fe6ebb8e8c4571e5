"""The Prometheus endpoint of the worker and the relay (they serve no other HTTP). The metrics themselves live
beside the code they count; docs/worker.md lists them and the alerts to set."""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

log = logging.getLogger(__name__)


def serve_metrics(host: str, port: int) -> None:
    """`GET /metrics` on host:port from a daemon thread; port 0 turns it off. A port already taken (a second
    process on one host with the same setting) is logged as an error and the process runs on without metrics:
    they must never be why events stop flowing."""
    if port == 0:
        return
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        log.error("metrics not served", extra={"address": f"{host}:{port}", "error": str(exc)})
        return
    log.info("metrics served", extra={"address": f"{host}:{port}"})
