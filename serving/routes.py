"""HTTP routes: thin adapters over the DataPlane. Blocking calls go to a thread; responses are orjson bytes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from serving import webhook
from serving.auth import AdminAccess, ApiKeys, api_key_header
from serving.dataplane import DataPlane
from serving.errors import ErrorBody, NotFound, NotReady, PayloadTooLarge
from serving.payloads import (
    EXPLAIN_DESCRIPTION,
    ActivateRequest,
    ActivateResponse,
    DriftReport,
    ExplainTop,
    Health,
    JobView,
    ModelEntry,
    PredictBatchRequest,
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
_Body = TypeVar("_Body", bound=BaseModel)
_EXPLAIN: TypeAdapter[int] = TypeAdapter(ExplainTop)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "invalid request: `errors` names each offending field",
        401: "missing X-API-Key",
        403: "this API key may not use this endpoint",
        404: "unknown job or model version",
        409: "UNSUPPORTED_SCHEMA: the model version's features schema cannot be served by this facade; "
        "GATE_REFUSED: the promotion gate refused the pair (`gate` holds both pairs' figures)",
        413: "the body is larger than the cap (OSML_MAX_PREDICT_BYTES, OSML_MAX_BATCH_BYTES, OSML_MAX_BATCH_ITEMS)",
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
async def ready(request: Request, plane: Plane) -> Response:
    """Readiness: a model pair is loaded, and the facade is not shutting down."""
    if request.app.state.draining:
        raise NotReady("shutting down")
    pair = plane.store.current
    if pair is None:
        raise NotReady("no model version is loaded yet")
    return _json({"status": "ready", "modelVersion": pair.model_version})


@router.get("/metrics", tags=["health"], response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _validated(model: type[_Body], body: bytes) -> _Body:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from exc


def _json_body(name: str) -> dict[str, Any]:
    """OpenAPI for a route that reads its own body: the `name` schema (see `document_bodies`), key required."""
    schema = {"$ref": f"#/components/schemas/{name}"}
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "security": [{api_key_header.scheme_name: []}],
        "parameters": [
            {
                "name": "explain",
                "in": "query",
                "required": False,
                "description": EXPLAIN_DESCRIPTION,
                "schema": _EXPLAIN.json_schema(),
            }
        ],
    }


def document_bodies(openapi: dict[str, Any]) -> dict[str, Any]:
    """Adds the request schemas of the prediction routes, which validate their raw body themselves."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    batch = PredictBatchRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(batch.pop("$defs"))
    schemas["PredictBatchRequest"] = batch
    return openapi


class _OwnBodyRoute(APIRoute):
    """A route whose endpoint takes the `Request` and returns the `Response` itself. FastAPI still routes and
    documents it (response model, `responses`, `openapi_extra`), and the app's exception handlers still map its
    errors, but its ASGI app calls the endpoint directly: FastAPI's per-request handler (dependency solving, body
    parsing, exit stacks) cost a /predict request several times its prediction."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = self._call_endpoint

    async def _call_endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        response: Response = await self.endpoint(Request(scope, receive, send))
        await response(scope, receive, send)


def _explain(request: Request) -> int | None:
    """The `explain` query parameter: how many contributions per model to return (absent: none, no cost)."""
    raw = request.query_params.get("explain")
    if raw is None:
        return None
    try:
        return _EXPLAIN.validate_strings(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("query", "explain")} for e in exc.errors(include_url=False, include_input=False)]
        ) from exc


def _authorise(request: Request) -> None:
    keys: ApiKeys = request.app.state.keys
    keys.check(request.headers.get(api_key_header.model.name), "predict")


async def _capped_body(request: Request, limit: int) -> bytes:
    """The body, read only up to `limit` bytes: a declared or streamed length beyond it is a 413 before any of
    the rest is received. Called after `_authorise`, so a caller without a key never makes the facade read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def predict(request: Request) -> Response:
    """SLA risk and ETA for one order: `DataPlane.predict` of a batch of one.

    Validates its own body (`PredictRequest.model_validate_json`, see `_OwnBodyRoute`) and runs on the event
    loop: a prediction is ~0.1 ms of work, cheaper than a thread hop.
    """
    _authorise(request)
    plane: DataPlane = request.app.state.plane
    explain = _explain(request)
    body = _validated(PredictRequest, await _capped_body(request, request.app.state.settings.max_predict_bytes))
    version, answers = plane.predict([body], explain=explain)
    request.state.log = {"requestId": body.requestId, "orderId": body.orderId, "modelVersion": version}
    return Response(orjson.dumps(answers[0]), media_type="application/json")


def _predict_batch_bytes(plane: DataPlane, body: bytes, max_items: int, explain: int | None) -> tuple[bytes, str, int]:
    items = _validated(PredictBatchRequest, body).items
    if len(items) > max_items:
        raise PayloadTooLarge(f"a batch holds at most {max_items} items")
    version, answers = plane.predict(items, explain=explain)
    return orjson.dumps({"modelVersion": version, "items": answers}), version, len(items)


async def predict_batch(request: Request) -> Response:
    """Many orders in one call (backfills): `{"items": [<a /predict body>, ...]}`; each answer has /predict's
    shape, all from one model pair. Parsing, validation and prediction run in a worker thread."""
    _authorise(request)
    plane: DataPlane = request.app.state.plane
    explain = _explain(request)
    settings = request.app.state.settings
    body = await _capped_body(request, settings.max_batch_bytes)
    content, version, count = await run_in_threadpool(
        _predict_batch_bytes, plane, body, settings.max_batch_items, explain
    )
    request.state.log = {"modelVersion": version, "items": count}
    return Response(content, media_type="application/json")


def add_prediction_routes(app_router: APIRouter) -> None:
    """/predict and /predict/batch, added to the app's own router: an included router is matched through
    FastAPI's per-route include machinery, which costs a /predict request more than its prediction."""
    for path, endpoint, response, body in (
        ("/predict", predict, PredictResponse, "PredictRequest"),
        ("/predict/batch", predict_batch, PredictBatchResponse, "PredictBatchRequest"),
    ):
        app_router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            response_model=response,
            responses=_errors(400, 401, 403, 409, 413, 500),
            tags=["predict"],
            openapi_extra=_json_body(body),
            route_class_override=_OwnBodyRoute,
        )


@router.post(
    "/train",
    status_code=202,
    response_model=TrainAccepted,
    responses=_errors(400, 401, 403),
    dependencies=[AdminAccess],
    tags=["train"],
)
async def train(body: TrainRequest, plane: Plane) -> Response:
    """Record a training job (docs/serving.md, "Training jobs"), status `queued`: a trainer (`osml trainer`) claims
    it and runs it in a process of its own; the facade never trains."""
    accepted = await asyncio.to_thread(plane.submit_training, body.datasetRef, body.trainConfig)
    return _json(accepted, status=202)


@router.get(
    "/train/jobs/{jobId}",
    response_model=JobView,
    responses=_errors(401, 403, 404),
    dependencies=[AdminAccess],
    tags=["train"],
)
async def training_job(jobId: str, plane: Plane) -> Response:
    """A training job's status, progress and, when done, its model version and metrics."""
    return _json(await asyncio.to_thread(plane.training_job, jobId))


@router.get(
    "/models",
    response_model=list[ModelEntry],
    responses=_errors(401, 403, 500),
    dependencies=[AdminAccess],
    tags=["models"],
)
async def models(plane: Plane) -> Response:
    """Every registered model pair, oldest first."""
    return _json(await asyncio.to_thread(plane.list_models))


@router.post(
    "/models/activate",
    response_model=ActivateResponse,
    responses=_errors(400, 401, 403, 404, 409, 502, 503),
    dependencies=[AdminAccess],
    tags=["models"],
)
async def activate(body: ActivateRequest, plane: Plane) -> Response:
    """Load a pair, pass the promotion gate (or `force`), point the registry alias `production` at it, then serve it."""
    return _json(await asyncio.to_thread(plane.activate, body.modelVersion, force=body.force))


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


@router.get(
    "/monitoring/drift",
    response_model=DriftReport,
    responses=_errors(401, 403, 500),
    dependencies=[AdminAccess],
    tags=["monitoring"],
)
async def drift(plane: Plane) -> Response:
    """PSI of every feature and of both outputs over the facade's window of served rows, against the serving
    pair's training profile (docs/operations.md, "Drift"); empty (no rows, no PSI) until rows are served."""
    return _json(plane.drift_report())
