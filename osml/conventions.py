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
PRODUCTION_STAGE: Final = "Production"
EXPERIMENT_NAME: Final = "osml-training"

TAG_MODEL_VERSION: Final = "modelVersion"
TAG_SCHEMA_VERSION: Final = "featuresSchemaVersion"
TAG_TRAINED_AT: Final = "trainedAt"
TAG_DATASET_REF: Final = "datasetRef"

MODEL_VERSION_PATTERN: Final = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{3}$")

EMBEDDED_DIR: Final = Path(".osml")


def embedded_tracking_uri(base: Path | None = None) -> str:
    """The embedded default: a SQLite store under .osml/ of the working directory."""
    root = (base or Path.cwd()) / EMBEDDED_DIR
    return f"sqlite:///{(root / 'mlflow.db').resolve()}"


def embedded_artifact_root(base: Path | None = None) -> Path:
    return ((base or Path.cwd()) / EMBEDDED_DIR / "artifacts").resolve()


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else the embedded default."""
    return os.environ.get("MLFLOW_TRACKING_URI") or embedded_tracking_uri()
