"""Request and response bodies of the facade, exactly the seed's (§6) plus the batch and readiness extensions."""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from osml.schema import SEED_EXAMPLE_PREDICT_BODY, Features

Identifier = Annotated[str, Field(min_length=1, max_length=200)]
MAX_BATCH_ITEMS = 100_000


class PredictRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [SEED_EXAMPLE_PREDICT_BODY]})

    requestId: Identifier
    orderId: Identifier
    features: Features


class Predictions(BaseModel):
    slaRisk: Annotated[float, Field(ge=0, le=1, description="probability of breaching the SLA, 4 decimals")]
    etaMinutes: Annotated[int, Field(ge=0, description="expected minutes from creation to resolution")]


class PredictResponse(BaseModel):
    requestId: str
    orderId: str
    modelVersion: str = Field(description="the model pair that produced these predictions")
    predictions: Predictions


class PredictBatchRequest(BaseModel):
    items: Annotated[list[PredictRequest], Field(min_length=1, max_length=MAX_BATCH_ITEMS)]


def _dict_type(model: type[BaseModel]) -> Any:
    """The same validation as `model`, producing plain dicts: derived field by field, so never a second schema.

    Validating a 10,000-item batch into dicts costs about a third of building model instances and dumping them,
    and the predictors want dicts anyway.
    """

    def convert(annotation: Any) -> Any:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return _dict_type(annotation)
        if get_origin(annotation) is list:
            return list[convert(get_args(annotation)[0])]  # type: ignore[misc]
        return annotation

    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation = convert(info.annotation)
        if info.metadata:
            annotation = Annotated[annotation, *info.metadata]
        fields[name] = annotation if info.is_required() else NotRequired[annotation]
    typed: Any = TypedDict(f"{model.__name__}Dict", fields)  # type: ignore[misc]
    setattr(typed, "__pydantic_config__", ConfigDict(extra=model.model_config.get("extra") or "ignore"))  # noqa: B010
    return typed


# /predict/batch validates the raw body with this adapter, off the event loop (see routes.predict_batch)
BATCH_ADAPTER: TypeAdapter[dict[str, Any]] = TypeAdapter(_dict_type(PredictBatchRequest))


class PredictBatchResponse(BaseModel):
    modelVersion: str = Field(description="the one model pair that produced every item")
    items: list[PredictResponse]


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    testSize: Annotated[float, Field(gt=0, lt=1)] = 0.2
    randomState: Annotated[int, Field(ge=0, le=2**32 - 1)] = 42
    candidates: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=100)]] | None,
        Field(min_length=1, description='model families to try (e.g. ["xgboost"]); default: all'),
    ] = None
    tuneSeconds: Annotated[float | None, Field(ge=0, le=3600, description="configuration search budget")] = None


class TrainRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"datasetRef": "s3://bucket/datasets/orders.csv", "trainConfig": {"testSize": 0.2, "randomState": 42}}
            ]
        },
    )

    datasetRef: Annotated[str, Field(min_length=1, max_length=2000)]
    trainConfig: TrainConfig = TrainConfig()


JobStatus = Literal["queued", "running", "done", "failed"]


class TrainAccepted(BaseModel):
    jobId: str
    status: JobStatus


class JobMetrics(BaseModel):
    auc: float
    f1: float
    maeMinutes: float


class JobView(BaseModel):
    jobId: str
    status: JobStatus
    progress: Annotated[float, Field(ge=0, le=1)]
    modelVersion: str | None
    metrics: JobMetrics | None = None
    reason: str | None = Field(default=None, description="why the job failed")
    datasetRef: str
    createdAt: str
    updatedAt: str


class ModelEntry(BaseModel):
    modelVersion: str
    trainedAt: str
    featuresSchemaVersion: str
    datasetRef: str
    slaRegistryVersion: str
    etaRegistryVersion: str
    active: bool = Field(description="under the registry alias `production`")
    servable: bool = Field(description="this facade can serve its features schema")


class ActivateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modelVersion: Identifier


class ActivateResponse(BaseModel):
    activeModelVersion: str


class WebhookAck(BaseModel):
    refresh: bool = Field(description="whether the event moved the alias production, so the pair is re-read now")


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    modelVersion: str
