"""Domain errors carry their HTTP status and a machine-readable `code`; one handler maps them to responses.

Every error body has the shape {"code": ..., "message": ...} (plus field-level `errors` for validation), and
never a stack trace: unexpected exceptions are logged with their traceback and answered with INTERNAL_ERROR.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger("osml.serving")


class ServingError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers

    def body_fields(self) -> dict[str, Any]:
        """What the error body carries beside `code` and `message`."""
        return {}


class InvalidRequest(ServingError):
    status = 400
    code = "INVALID_REQUEST"

    def __init__(self, message: str, *, errors: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(message)
        self.errors = list(errors)

    def body_fields(self) -> dict[str, Any]:
        return {"errors": self.errors}


class Unauthenticated(ServingError):
    status = 401
    code = "UNAUTHENTICATED"


class Forbidden(ServingError):
    status = 403
    code = "FORBIDDEN"


class NotFound(ServingError):
    status = 404
    code = "NOT_FOUND"


class UnknownJob(NotFound):
    code = "JOB_NOT_FOUND"


class UnknownModelVersion(NotFound):
    code = "MODEL_VERSION_NOT_FOUND"


class PayloadTooLarge(ServingError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class UnsupportedSchema(ServingError):
    status = 409
    code = "UNSUPPORTED_SCHEMA"


class GateRefused(ServingError):
    """The promotion gate found the candidate worse than production by more than the margins
    (docs/serving.md, "Promotion gate"); `gate` carries both pairs' figures."""

    status = 409
    code = "GATE_REFUSED"

    def __init__(self, message: str, *, gate: dict[str, Any]) -> None:
        super().__init__(message)
        self.gate = gate

    def body_fields(self) -> dict[str, Any]:
        return {"gate": self.gate}


class ExplanationsUnavailable(ServingError):
    """The loaded pair's models have no contributions to give (only `osml.runtime` models do)."""

    status = 409
    code = "EXPLANATIONS_UNAVAILABLE"


class ModelUnavailable(ServingError):
    """The seed's 'modelo indisponível': no pair is loaded (yet)."""

    status = 500
    code = "MODEL_UNAVAILABLE"


class ModelLoadFailed(ServingError):
    status = 502
    code = "MODEL_LOAD_FAILED"


class RegistryUnavailable(ServingError):
    status = 503
    code = "REGISTRY_UNAVAILABLE"


class JobStoreUnavailable(ServingError):
    status = 503
    code = "JOB_STORE_UNAVAILABLE"


class NotReady(ServingError):
    status = 503
    code = "NOT_READY"


class ErrorBody(BaseModel):
    """What every error response carries (documented in OpenAPI)."""

    code: str
    message: str
    errors: list[dict[str, Any]] | None = None
    gate: dict[str, Any] | None = None  # GATE_REFUSED: both pairs' figures (serving.payloads.GateReport)


def error_response(status: int, code: str, message: str, **extra: Any) -> Response:
    body = {"code": code, "message": message, **extra}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as {field, message, type}: the dotted path of the offending field, no input echo."""
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        out.append({"field": ".".join(loc) or "body", "message": str(err.get("msg", "")), "type": err.get("type")})
    return out


async def _serving_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServingError)
    response = error_response(exc.status, exc.code, exc.message, **exc.body_fields())
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc)
    fields = ", ".join(e["field"] for e in errors)
    return error_response(400, InvalidRequest.code, f"invalid request: {fields}", errors=errors)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
    response = error_response(exc.status_code, codes.get(exc.status_code, "HTTP_ERROR"), str(exc.detail))
    if exc.headers:  # a 405's `Allow` (RFC 9110) among them
        response.headers.update(exc.headers)
    return response


async def _job_store_down(_request: Request, exc: Exception) -> Response:
    log.warning("job database unreachable", extra={"error": str(exc).splitlines()[0] if str(exc) else ""})
    return error_response(JobStoreUnavailable.status, JobStoreUnavailable.code, "the job database is unreachable")


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    return error_response(500, "INTERNAL_ERROR", "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServingError, _serving_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _job_store_down)
    app.add_exception_handler(InterfaceError, _job_store_down)
    app.add_exception_handler(Exception, _unexpected)
