"""MLflow naming conventions shared by training, serving and the stack (docs/serving.md, docs/model-card.md)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

SLA_MODEL_NAME: Final = "os-sla-risk"
ETA_MODEL_NAME: Final = "os-eta-minutes"
MODEL_NAMES: Final = (SLA_MODEL_NAME, ETA_MODEL_NAME)
PRODUCTION_ALIAS: Final = "production"
CHALLENGER_ALIAS: Final = "challenger"
PRODUCTION_STAGE: Final = "Production"
EXPERIMENT_NAME: Final = "osml-training"
LIVE_EXPERIMENT_NAME: Final = "osml-live"

TAG_MODEL_VERSION: Final = "modelVersion"
TAG_SCHEMA_VERSION: Final = "featuresSchemaVersion"
TAG_TRAINED_AT: Final = "trainedAt"
TAG_DATASET_REF: Final = "datasetRef"
# how the SLA labels were made (training/labels.py): the runtime answers 1.0 for an overdue open order under "due_at"
TAG_SLA_LABEL_RULE: Final = "osml.slaLabelRule"
# the status-name markers that counted as waiting (the `pauses` feature), comma-separated
TAG_WAITING_MARKERS: Final = "osml.waitingMarkers"

# the creation instant (ISO, UTC) of the newest order the served models trained on: the promotion gate scores a
# candidate on orders created after it (serving/gate.py)
TAG_ORDERS_UNTIL: Final = "osml.ordersUntil"

MODEL_VERSION_PATTERN: Final = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{3}$")

EMBEDDED_DIR: Final = Path(".osml")


def embedded_tracking_uri(base: Path | None = None) -> str:
    """The embedded default: a SQLite store under .osml/ of the working directory."""
    root = (base or Path.cwd()) / EMBEDDED_DIR
    return f"sqlite:///{(root / 'mlflow.db').resolve()}"


def embedded_artifact_root(base: Path | None = None) -> Path:
    return ((base or Path.cwd()) / EMBEDDED_DIR / "artifacts").resolve()


def embedded_database_url() -> str:
    """Job state for the embedded default: a SQLite file beside the MLflow store under .osml/."""
    return f"sqlite:///{(Path.cwd() / EMBEDDED_DIR / 'osml.db').resolve()}"


def sqlite_artifact_root(tracking_uri: str) -> Path | None:
    """For a SQLite store (the embedded default), artifacts go to `artifacts/` beside the database file."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    return Path(tracking_uri[len(prefix) :]).parent / "artifacts"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else the embedded default."""
    return os.environ.get("MLFLOW_TRACKING_URI") or embedded_tracking_uri()
