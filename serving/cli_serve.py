"""`osml serve`: the facade on uvicorn (uvloop + httptools, one process, no access log: the facade logs)."""

from __future__ import annotations

import argparse
import os
import time
from types import FrameType
from typing import TYPE_CHECKING

from fastapi import FastAPI

from osml.logs import configure_logging
from serving.settings import ServingSettings

if TYPE_CHECKING:
    import uvicorn


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (default OSML_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default OSML_PORT or 8000)")


def bounded_registry_calls() -> None:
    """MLflow retries an unreachable server for minutes by default; the facade would rather keep serving and
    try again on its next poll. Explicit settings in the environment win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")


def draining_server(config: uvicorn.Config, app: FastAPI, *, drain_seconds: float) -> uvicorn.Server:
    """A uvicorn server that drains on SIGTERM: readiness answers 503 at once while the listener stays open for
    `drain_seconds` (a load balancer sees it and stops sending), then uvicorn's own shutdown stops accepting,
    lets in-flight requests finish within `timeout_graceful_shutdown` and exits. A second signal exits at once."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        deadline: float | None = None
        signal: int | None = None

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.deadline is not None or drain_seconds == 0:
                super().handle_exit(sig, frame)
                return
            app.state.draining = True
            self.signal, self.deadline = sig, time.monotonic() + drain_seconds

        async def on_tick(self, counter: int) -> bool:
            if self.signal is not None and self.deadline is not None and time.monotonic() >= self.deadline:
                super().handle_exit(self.signal, None)
            return await super().on_tick(counter)

    return DrainingServer(config)


def serve(settings: ServingSettings) -> None:
    import uvicorn

    from serving.app import create_app

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,  # keep the JSON logging configured below
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
    )
    draining_server(config, app, drain_seconds=settings.drain_seconds).run()


def run(args: argparse.Namespace) -> int:
    bounded_registry_calls()
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = ServingSettings(**overrides)
    configure_logging(settings.log_level)
    serve(settings)
    return 0
