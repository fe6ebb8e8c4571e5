"""Request and response bodies of the facade: the endpoint table of docs/serving.md, byte for byte."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

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


MAX_EXPLAIN = 50
ExplainTop = Annotated[int, Field(ge=1, le=MAX_EXPLAIN)]
EXPLAIN_DESCRIPTION = (
    "k: also return, per model, the k feature contributions of largest magnitude (XGBoost's exact TreeSHAP), with "
    "the base value and the sum of the others, so that base + contributions + rest = the model's margin. "
    'Absent: no explanations, and no cost. See docs/serving.md, "Explanations".'
)


class RiskContribution(BaseModel):
    feature: str
    logOdds: float = Field(description="TreeSHAP contribution to the booster's log-odds")
    probabilityPoints: float = Field(
        description="100 x (calibrated probability of base + this contribution alone - that of the base)"
    )


class RiskBase(BaseModel):
    logOdds: float = Field(description="expected log-odds over the training rows (TreeSHAP's bias)")
    probability: float = Field(description="the calibrated probability of the base log-odds")


class LogOdds(BaseModel):
    logOdds: float


class RiskExplanation(BaseModel):
    base: RiskBase
    logOdds: float = Field(description="the booster's margin for this order: base + contributions + rest")
    contributions: list[RiskContribution]
    rest: LogOdds = Field(description="the sum of the contributions not listed")


class EtaContribution(BaseModel):
    feature: str
    log1pMinutes: float = Field(description="TreeSHAP contribution to the booster's log1p(minutes)")
    minutes: float = Field(description="expm1(base + this contribution alone) - expm1(base), minutes")


class EtaBase(BaseModel):
    log1pMinutes: float = Field(description="expected log1p(minutes) over the training rows (TreeSHAP's bias)")
    minutes: float = Field(description="expm1 of the base")


class Log1pMinutes(BaseModel):
    log1pMinutes: float


class EtaExplanation(BaseModel):
    base: EtaBase
    log1pMinutes: float = Field(description="the booster's output for this order: base + contributions + rest")
    contributions: list[EtaContribution]
    rest: Log1pMinutes = Field(description="the sum of the contributions not listed")


class Explanations(BaseModel):
    slaRisk: RiskExplanation
    etaMinutes: EtaExplanation


class PredictResponse(BaseModel):
    requestId: str
    orderId: str
    modelVersion: str = Field(description="the model pair that produced these predictions")
    predictions: Predictions
    explanations: Explanations | None = Field(default=None, description="only with the query parameter `explain`")


class PredictBatchRequest(BaseModel):
    """/predict/batch: many /predict bodies, validated as the very same `PredictRequest`."""

    items: Annotated[list[PredictRequest], Field(min_length=1, max_length=MAX_BATCH_ITEMS)]


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
    engine: Annotated[
        Literal["single", "dask"] | None,
        Field(
            description="single: one process; dask: the trainer's Dask cluster (docs/scale.md); default: the trainer's"
        ),
    ] = None


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


class GatePair(BaseModel):
    modelVersion: str
    auc: float | None = Field(description="SLA ROC AUC on the rows (null: a single SLA class among them)")
    maeMinutes: float | None = Field(description="ETA mean absolute error in minutes (null: no ETA labels)")


class GateRows(BaseModel):
    sla: int = Field(description="rows with an SLA label (the AUC's)")
    eta: int = Field(description="rows with a remaining-time label (the MAE's)")


class GateMargins(BaseModel):
    auc: float = Field(description="OSML_GATE_AUC_MARGIN, absolute")
    maeRelative: float = Field(description="OSML_GATE_MAE_MARGIN, relative to production's MAE")


class GateReport(BaseModel):
    """Both pairs' figures on the same rows (docs/serving.md, "Promotion gate")."""

    candidate: GatePair
    production: GatePair
    rows: GateRows
    source: Literal["recent", "evaluation", "none"] = Field(
        description="recent: orders newer than the candidate's data; evaluation: the candidate's own test slice; "
        "none: no rows either pair did not train on (the gate passes)"
    )
    sourceModelVersion: str | None = Field(description="the pair whose stored evaluation slice held the rows")
    margins: GateMargins
    reasons: list[str] = Field(description="why the candidate is refused (empty: it passes)")


class ModelEntry(BaseModel):
    modelVersion: str
    trainedAt: str
    featuresSchemaVersion: str
    datasetRef: str
    slaRegistryVersion: str
    etaRegistryVersion: str
    active: bool = Field(description="under the registry alias `production`")
    servable: bool = Field(description="this facade can serve its features schema")
    challenger: bool = Field(
        description="under the registry alias `challenger`: scored in the shadow of production (docs/serving.md)"
    )
    gateRefused: GateReport | None = Field(
        default=None,
        description="the alias names this pair but this facade's promotion gate refused it: the previous pair serves",
    )


class ActivateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modelVersion: Identifier
    force: bool = Field(default=False, description="activate even when the promotion gate refuses (logged)")


class ActivateResponse(BaseModel):
    activeModelVersion: str


class WebhookAck(BaseModel):
    refresh: bool = Field(description="whether the event moved the alias production, so the pair is re-read now")


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    modelVersion: str


class DriftReport(BaseModel):
    modelVersion: str
    role: str = Field(description="`production`: the pair serving the answers")
    windowRows: int = Field(description="served rows in the window")
    windowCapacity: int = Field(description="the window keeps at most this many of the latest rows")
    windowFrom: float | None = Field(description="Unix time of the oldest row in the window")
    windowTo: float | None = Field(description="Unix time of the newest row in the window")
    psi: dict[str, float] = Field(description="population stability index per feature, and of slaRisk, etaMinutes")
