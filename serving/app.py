"""`create_app(settings)`: the FastAPI facade. Nothing happens at import; models load in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from mlflow import MlflowClient

from osml import registry
from osml.conventions import CHALLENGER_ALIAS
from osml.job_store import JobStore, make_engine
from serving import webhook
from serving.auth import ApiKeys
from serving.dataplane import DataPlane
from serving.drift import DriftMonitor
from serving.errors import install_error_handlers
from serving.gate import Gate
from serving.jobs import TrainingJobs
from serving.metrics import ObservabilityMiddleware, ServingMetrics
from serving.model_store import ModelStore, RegistryLoader
from serving.routes import add_prediction_routes, document_bodies, router
from serving.settings import ServingSettings
from serving.shadow import ShadowScorer, sink_for

log = logging.getLogger("osml.serving")


def _register_webhook(client: MlflowClient, settings: ServingSettings) -> None:
    assert settings.webhook_url is not None and settings.webhook_secret is not None
    try:
        webhook_id = webhook.register(
            client, url=settings.webhook_url, secret=settings.webhook_secret.get_secret_value()
        )
    except Exception as exc:  # e.g. a file store or an older server: the poll still follows the alias
        log.warning("registry webhook not registered; polling only", extra={"error": str(exc)})
        return
    log.info("registry webhook registered", extra={"webhookId": webhook_id, "url": settings.webhook_url})


async def _start_jobs(jobs: TrainingJobs) -> bool:
    """Creates the job tables; False while the job database is unreachable. The facade boots anyway: predictions
    never touch it, and /train answers 503 until it is back."""
    try:
        await asyncio.to_thread(jobs.start)
    except Exception as exc:
        log.warning("job database unreachable; retrying", extra={"error": str(exc)})
        return False
    return True


async def _sweep_jobs(jobs: TrainingJobs, *, started: bool, every: float, retry: float) -> None:
    while True:
        started = started or await _start_jobs(jobs)
        if started:
            try:
                await asyncio.to_thread(jobs.sweep)
            except Exception as exc:  # the job database may be briefly unreachable; keep trying
                log.warning("training job sweep failed", extra={"error": str(exc)})
        await asyncio.sleep(every if started else retry)


def create_app(settings: ServingSettings | None = None) -> FastAPI:
    settings = settings or ServingSettings()
    metrics = ServingMetrics()
    drift = DriftMonitor()
    metrics.registry.register(drift)

    @cache
    def client() -> MlflowClient:
        return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)

    engine = make_engine(settings.database_url, application_name="osml-facade")
    jobs = TrainingJobs(store=JobStore(engine), stale_seconds=settings.job_stale_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with tempfile.TemporaryDirectory(prefix="osml-models-") as cache_dir:
            loader = RegistryLoader(tracking_uri=settings.tracking_uri, cache_dir=Path(cache_dir))
            store = ModelStore(
                read_production=lambda: registry.production_pair(client()),
                load=loader,
                poll_seconds=settings.model_poll_seconds,
                retry_max_seconds=settings.model_retry_max_seconds,
                on_swap=lambda active: metrics.set_active(active.model_version),
                on_failure=lambda model_version: metrics.load_failures.labels(model_version).inc(),
                gate=Gate(
                    client=client,
                    tracking_uri=settings.tracking_uri,
                    read_slice=loader.evaluation,
                    auc_margin=settings.gate.auc_margin,
                    mae_margin=settings.gate.mae_margin,
                ),
                on_decision=lambda comparison, decision, via: metrics.gate_decisions.labels(
                    decision, comparison.candidate, via
                ).inc(),
            )
            shadow = ShadowScorer(
                read_challenger=lambda: registry.aliased_pair(client(), CHALLENGER_ALIAS),
                load=RegistryLoader(tracking_uri=settings.tracking_uri, cache_dir=Path(cache_dir)),
                poll_seconds=settings.model_poll_seconds,
                metrics=metrics.shadow,
                sink=sink_for(engine),
                capacity_rows=settings.shadow_queue_rows,
                flush_seconds=settings.shadow_flush_seconds,
            )
            app.state.plane = DataPlane(
                store=store, client=client, jobs=jobs, metrics=metrics, drift=drift, shadow=shadow
            )
            jobs_started = await _start_jobs(jobs)
            await asyncio.to_thread(store.refresh)
            await asyncio.to_thread(shadow.store.refresh)
            await asyncio.to_thread(shadow.start)
            if settings.webhook_url is not None:
                await asyncio.to_thread(_register_webhook, client(), settings)
            # Everything allocated so far (MLflow, sklearn, the models) lives as long as the process: moving it
            # out of the collector's view makes each collection triggered by a large request cheap.
            gc.freeze()
            tasks = [
                asyncio.create_task(store.poll_forever(), name="osml-model-poller"),
                asyncio.create_task(shadow.store.poll_forever(), name="osml-challenger-poller"),
                asyncio.create_task(
                    _sweep_jobs(
                        jobs,
                        started=jobs_started,
                        every=settings.job_stale_seconds / 2,
                        retry=settings.model_poll_seconds,
                    ),
                    name="osml-job-sweep",
                ),
            ]
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await asyncio.to_thread(shadow.close)
                engine.dispose()

    app = FastAPI(
        title="osml facade",
        version="1",
        summary="SLA risk and ETA for service orders, served from the MLflow Model Registry",
        lifespan=lifespan,
        # OpenTelemetry off: /metrics and the JSON request log are the facade's observability, and the check
        # alone costs ~30 µs per request
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.draining = False  # set on SIGTERM (serving/cli_serve.py): readiness answers 503 from then on
    app.state.keys = ApiKeys(settings)
    app.state.metrics = metrics
    app.state.settings = settings
    install_error_handlers(app)
    add_prediction_routes(app.router)  # first: the routes matched most often are tried first
    app.include_router(router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_bodies(
                get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)  # added last: outermost, sees every request
    return app
