"""HTTP routes: thin adapters over the DataPlane. Blocking calls go to a thread; responses are orjson bytes."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.responses import Response

from serving import webhook
from serving.auth import AdminAccess, PredictAccess
from serving.dataplane import DataPlane
from serving.errors import ErrorBody, NotFound, NotReady
from serving.payloads import (
    BATCH_ADAPTER,
    MAX_BATCH_ITEMS,
    ActivateRequest,
    ActivateResponse,
    Health,
    JobView,
    ModelEntry,
    PredictBatchResponse,
    PredictRequest,
    PredictResponse,
    Readiness,
    TrainAccepted,
    TrainRequest,
    WebhookAck,
)


async def _plane(request: Request) -> DataPlane:
    plane: DataPlane = request.app.state.plane
    return plane


Plane = Annotated[DataPlane, Depends(_plane)]


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "invalid request: `errors` names each offending field",
        401: "missing X-API-Key",
        403: "this API key may not use this endpoint",
        404: "unknown job or model version",
        409: "the model version's features schema cannot be served by this facade",
        500: "MODEL_UNAVAILABLE: no model version is loaded",
        502: "the model version could not be loaded",
        503: "not ready, or the model registry is unavailable",
    }
    return {s: {"model": ErrorBody, "description": descriptions[s]} for s in statuses}


router = APIRouter()


@router.get("/health", response_model=Health, tags=["health"])
async def health() -> Response:
    """Liveness: the process answers."""
    return _json({"status": "ok"})


@router.get("/health/ready", response_model=Readiness, responses=_errors(503), tags=["health"])
async def ready(plane: Plane) -> Response:
    """Readiness: a model pair is loaded."""
    pair = plane.store.current
    if pair is None:
        raise NotReady("no model version is loaded yet")
    return _json({"status": "ready", "modelVersion": pair.model_version})


@router.get("/metrics", tags=["health"], response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=_errors(400, 401, 403, 500),
    dependencies=[PredictAccess],
    tags=["predict"],
)
async def predict(body: PredictRequest, request: Request, plane: Plane) -> Response:
    """SLA risk and ETA for one order (seed §6.2).

    Runs on the event loop on purpose: a prediction is ~0.1 ms of numpy work, cheaper than a thread hop.
    """
    result = plane.predict(body)
    request.state.log = {"requestId": body.requestId, "orderId": body.orderId, "modelVersion": result["modelVersion"]}
    return _json(result)


def _predict_batch_bytes(plane: DataPlane, body: bytes) -> tuple[bytes, str, int]:
    try:
        items = BATCH_ADAPTER.validate_json(body)["items"]
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from exc
    result = plane.predict_batch(items)
    return orjson.dumps(result), str(result["modelVersion"]), len(items)


_BATCH_BODY_SCHEMA = {
    "type": "object",
    "required": ["items"],
    "properties": {
        "items": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_BATCH_ITEMS,
            "items": {"$ref": "#/components/schemas/PredictRequest"},
        }
    },
}


@router.post(
    "/predict/batch",
    response_model=PredictBatchResponse,
    responses=_errors(400, 401, 403, 500),
    dependencies=[PredictAccess],
    tags=["predict"],
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _BATCH_BODY_SCHEMA}}}},
)
async def predict_batch(request: Request, plane: Plane) -> Response:
    """Many orders in one call (backfills): `{"items": [<a /predict body>, ...]}`; each answer has /predict's
    shape, all from one model pair. Parsing, validation and prediction run in a worker thread."""
    body = await request.body()
    content, version, count = await run_in_threadpool(_predict_batch_bytes, plane, body)
    request.state.log = {"modelVersion": version, "items": count}
    return Response(content, media_type="application/json")


@router.post(
    "/train",
    status_code=202,
    response_model=TrainAccepted,
    responses=_errors(400, 401, 403),
    dependencies=[AdminAccess],
    tags=["train"],
)
async def train(body: TrainRequest, plane: Plane) -> Response:
    """Record a training job (seed §6.3), status `queued`: a trainer (`osml trainer`) claims it and runs it in a
    process of its own; the facade never trains."""
    accepted = await asyncio.to_thread(
        plane.submit_training,
        dataset_ref=body.datasetRef,
        test_size=body.trainConfig.testSize,
        random_state=body.trainConfig.randomState,
        candidates=body.trainConfig.candidates,
        tune_seconds=body.trainConfig.tuneSeconds,
    )
    return _json(accepted, status=202)


@router.get(
    "/train/jobs/{jobId}",
    response_model=JobView,
    responses=_errors(401, 403, 404),
    dependencies=[AdminAccess],
    tags=["train"],
)
async def training_job(jobId: str, plane: Plane) -> Response:
    """A training job's status, progress and, when done, its model version and metrics (seed §6.4)."""
    return _json(await asyncio.to_thread(plane.training_job, jobId))


@router.get(
    "/models",
    response_model=list[ModelEntry],
    responses=_errors(401, 403, 503),
    dependencies=[AdminAccess],
    tags=["models"],
)
async def models(plane: Plane) -> Response:
    """Every registered model pair (seed §6.5), oldest first."""
    return _json(await asyncio.to_thread(plane.list_models))


@router.post(
    "/models/activate",
    response_model=ActivateResponse,
    responses=_errors(400, 401, 403, 404, 409, 502, 503),
    dependencies=[AdminAccess],
    tags=["models"],
)
async def activate(body: ActivateRequest, plane: Plane) -> Response:
    """Load a pair, point the registry alias `production` at it, then serve it (seed §6.6)."""
    return _json(await asyncio.to_thread(plane.activate, body.modelVersion))


@router.post(
    "/models/webhook",
    status_code=202,
    response_model=WebhookAck,
    responses={
        400: {"model": ErrorBody, "description": "not an MLflow webhook event"},
        401: {"model": ErrorBody, "description": "missing, stale or wrong X-MLflow-Signature"},
        404: {"model": ErrorBody, "description": "no webhook secret is configured (OSML_WEBHOOK_SECRET)"},
    },
    tags=["models"],
)
async def registry_webhook(request: Request, plane: Plane) -> Response:
    """MLflow registry webhook target, authenticated by MLflow's HMAC signature (no API key): when the alias
    `production` moves, the pair is re-read and swapped at once rather than at the next poll."""
    secret = request.app.state.settings.webhook_secret
    if secret is None:
        raise NotFound("no webhook is configured: set OSML_WEBHOOK_SECRET")
    body = await request.body()
    webhook.verify(
        secret.get_secret_value(),
        headers=dict(request.headers),
        body=body,
        now=time.time(),
        max_age_seconds=request.app.state.settings.webhook_max_age_seconds,
    )
    refresh = webhook.moves_production(body)
    if refresh:
        plane.store.refresh_soon()
    request.state.log = {"deliveryId": request.headers.get(webhook.DELIVERY_ID_HEADER), "refresh": refresh}
    return _json({"refresh": refresh}, status=202)
