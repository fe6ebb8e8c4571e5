"""`osml serve`: the facade on uvicorn (uvloop + httptools, one process, no access log: the facade logs)."""

from __future__ import annotations

import argparse
import os

from osml.logs import configure_logging
from serving.settings import ServingSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (default OSML_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default OSML_PORT or 8000)")


def bounded_registry_calls() -> None:
    """MLflow retries an unreachable server for minutes by default; the facade would rather keep serving and
    try again on its next poll. Explicit settings in the environment win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")


def serve(settings: ServingSettings) -> None:
    import uvicorn

    from serving.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,  # keep the JSON logging configured below
        timeout_graceful_shutdown=10,
    )


def run(args: argparse.Namespace) -> int:
    bounded_registry_calls()
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = ServingSettings(**overrides)
    configure_logging(settings.log_level)
    serve(settings)
    return 0
