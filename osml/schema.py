"""The features schema, defined once for training, serving and the worker.

Schema "1" is the backend's original list. Schema "2" adds optional context fields (location, subcategory,
assignment group, channel) that raise quality on real data; every v1 payload is a valid v2 payload.
Schema "3" adds `assignmentGroupWorkloadOpen` (orders of the same assignment group open at that instant, the
queue the order joins): on the UCI log it is what lifts SLA AUC and ETA error past the acceptance bar.
Schema "4" predicts at any moment of an order's life: the as-of fields (`status`, `minutesInStatus`,
`statusChanges`, `pauses`, `reassignments`, `reopens`; docs/features.md defines each) come from the status history
up to the prediction instant, and `timeSinceCreatedMinutes` / `dueInMinutes` are taken as of that instant too.
Every schema-3 payload is a valid schema-4 payload and means "at creation".
A model records the schema version it was trained on; serving refuses a version it does not list here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class Priority(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


PRIORITY_RANK: Final[dict[str, int]] = {p.value: i for i, p in enumerate(Priority)}

# Bounds keep absurd values out without rejecting real ones: ~19 years either way in minutes.
_MAX_MINUTES: Final = 10_000_000
Minutes = Annotated[float, Field(ge=-_MAX_MINUTES, le=_MAX_MINUTES, allow_inf_nan=False)]


def _storable(text: str) -> str:
    """PostgreSQL text and jsonb cannot hold NUL: refused here, at the edge, rather than by the database after the
    prediction. (pydantic itself refuses unpaired surrogates, which have no UTF-8 form.)"""
    if "\x00" in text:
        raise ValueError("must not contain the NUL character")
    return text


Text = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_storable)]
ContextText = Text  # schema 2's context fields
NonNegativeMinutes = Annotated[float, Field(ge=0, le=_MAX_MINUTES, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=1_000_000)]
# Statuses are compared upper-case (the history is stored that way); an unknown status is valid input.
StatusText = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_storable), AfterValidator(str.upper)]


class Features(BaseModel):
    """One order's features as of the moment of prediction (camelCase, as in the seed's payloads)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    priority: Priority
    category: Text
    createdHour: Annotated[int, Field(ge=0, le=23)]
    createdDayOfWeek: Annotated[int, Field(ge=0, le=6, description="Monday = 0")]
    hasAssignee: Annotated[int, Field(ge=0, le=1)]
    assigneeWorkloadOpen: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    timeSinceCreatedMinutes: NonNegativeMinutes | None = Field(None, description="now - created_at (0 at creation)")
    dueInMinutes: Minutes | None = Field(None, description="due_at - now; negative once overdue")
    # schema 2: optional context
    location: ContextText | None = None
    subcategory: ContextText | None = None
    assignmentGroup: ContextText | None = None
    channel: ContextText | None = None
    # schema 3: the assignment group's queue at that instant
    assignmentGroupWorkloadOpen: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    # schema 4: the order's life up to the prediction instant
    status: StatusText | None = Field(None, description="the status of the latest history row at or before now")
    minutesInStatus: NonNegativeMinutes | None = Field(None, description="now - the latest status change")
    statusChanges: Count | None = Field(None, description="history rows after the first one, up to now")
    pauses: Count | None = Field(None, description="entries into a waiting status up to now")
    reassignments: Count | None = Field(None, description="reassignments up to now")
    reopens: Count | None = Field(None, description="reopenings up to now")


CATEGORICAL_V1: Final = ("priority", "category")
NUMERIC_V1: Final = (
    "createdHour",
    "createdDayOfWeek",
    "hasAssignee",
    "assigneeWorkloadOpen",
    "timeSinceCreatedMinutes",
    "dueInMinutes",
)
CONTEXT_V2: Final = ("location", "subcategory", "assignmentGroup", "channel")
NUMERIC_V3: Final = (*NUMERIC_V1, "assignmentGroupWorkloadOpen")
LIFECYCLE_CATEGORICAL_V4: Final = ("status",)
LIFECYCLE_NUMERIC_V4: Final = ("minutesInStatus", "statusChanges", "pauses", "reassignments", "reopens")

SCHEMAS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    # version -> (categorical columns, numeric columns)
    "1": (CATEGORICAL_V1, NUMERIC_V1),
    "2": (CATEGORICAL_V1 + CONTEXT_V2, NUMERIC_V1),
    "3": (CATEGORICAL_V1 + CONTEXT_V2, NUMERIC_V3),
    "4": (CATEGORICAL_V1 + CONTEXT_V2 + LIFECYCLE_CATEGORICAL_V4, NUMERIC_V3 + LIFECYCLE_NUMERIC_V4),
}
CURRENT_SCHEMA_VERSION: Final = "4"
SUPPORTED_SCHEMA_VERSIONS: Final = frozenset(SCHEMAS)
REQUIRED_FEATURES: Final = ("priority", "category", "createdHour", "createdDayOfWeek", "hasAssignee")


# The example order of POST /predict (docs/serving.md), valid under every schema: OpenAPI examples, smoke tests, the printed curl, bench.
SEED_EXAMPLE_FEATURES: Final[dict[str, Any]] = {
    "priority": "HIGH",
    "category": "TI",
    "createdHour": 14,
    "createdDayOfWeek": 2,
    "hasAssignee": 1,
    "dueInMinutes": 720,
}
SEED_EXAMPLE_PREDICT_BODY: Final[dict[str, Any]] = {
    "requestId": "uuid",
    "orderId": "uuid",
    "features": SEED_EXAMPLE_FEATURES,
}


def feature_columns(schema_version: str) -> tuple[str, ...]:
    """All feature columns of a schema version, categorical first."""
    categorical, numeric = SCHEMAS[schema_version]
    return categorical + numeric
