"""The two event bodies (docs/worker.md, Events) and their (de)serialisation.

Identifiers are validated as UUIDs but kept as the strings the backend sent, so the READY event carries the
order id byte for byte as it arrived.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

REQUESTED: Final = "ML_PREDICTION_REQUESTED"
READY: Final = "ML_PREDICTION_READY"
SYSTEM_ACTOR: Final = "system"

# READY event ids derive from the REQUESTED event id, so the answer to one request always has the same id
_READY_NAMESPACE: Final = uuid.UUID("4f1c2e39-8c1a-4c55-9d0b-6f3a7c1e2d10")


# canonical 8-4-4-4-12 form (either case), so lowercasing is enough to compare ids
UuidText = Annotated[
    str, Field(pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
]


class RequestedData(BaseModel):
    # the facade owns feature validation (it knows the active model's schema); here only "an object"
    features: dict[str, Any]


class PredictionRequested(BaseModel):
    """ML_PREDICTION_REQUESTED; unknown top-level fields are ignored so the backend may add some."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    eventId: UuidText
    type: Literal["ML_PREDICTION_REQUESTED"]
    occurredAt: AwareDatetime
    orderId: UuidText
    actorId: Annotated[str, Field(min_length=1, max_length=200)]
    data: RequestedData


class ReadyData(BaseModel):
    modelVersion: str
    slaRisk: float
    etaMinutes: int


class PredictionReady(BaseModel):
    """ML_PREDICTION_READY, fields in the documented order (docs/worker.md)."""

    model_config = ConfigDict(frozen=True)

    eventId: str
    type: Literal["ML_PREDICTION_READY"] = READY
    occurredAt: str
    orderId: str
    actorId: Literal["system"] = SYSTEM_ACTOR
    data: ReadyData

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump())


class InvalidEvent(ValueError):
    """A message that can never succeed; `reason` is a short machine-readable code for the DLQ header."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_requested(body: bytes) -> PredictionRequested:
    """Parse one REQUESTED body or raise InvalidEvent (invalid_json, wrong_type or invalid_event)."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("invalid_json", str(exc)) from exc
    if not isinstance(raw, dict):
        raise InvalidEvent("invalid_event", f"expected a JSON object, got {type(raw).__name__}")
    if raw.get("type") != REQUESTED:
        raise InvalidEvent("wrong_type", f"type must be {REQUESTED!r}, got {raw.get('type')!r}")
    try:
        return PredictionRequested.model_validate(raw)
    except ValidationError as exc:
        raise InvalidEvent("invalid_event", _describe(exc)) from exc


def _describe(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())


def utc_timestamp(moment: datetime) -> str:
    """ISO-8601 UTC with a Z, second precision, as in the seed (`2026-05-10T12:00:05Z`)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ready_event_id(requested_event_id: str) -> str:
    return str(uuid.uuid5(_READY_NAMESPACE, requested_event_id.lower()))


def ready_for(
    event: PredictionRequested, *, model_version: str, sla_risk: float, eta_minutes: int, at: datetime
) -> PredictionReady:
    return PredictionReady(
        eventId=ready_event_id(event.eventId),
        occurredAt=utc_timestamp(at),
        orderId=event.orderId,
        data=ReadyData(modelVersion=model_version, slaRisk=sla_risk, etaMinutes=eta_minutes),
    )
