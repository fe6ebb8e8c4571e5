"""Where training logs: the tracking URI, the experiment (with its artifact root) and dataset sources."""

from __future__ import annotations

from typing import Any

from mlflow import MlflowClient
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.exceptions import MlflowException

from osml.conventions import EXPERIMENT_NAME, sqlite_artifact_root
from osml.dataset_access import mask_secrets

# The MLflow UI opens an experiment in the view its kind names; untagged, 3.x infers the GenAI overview.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def ensure_experiment(client: MlflowClient, tracking_uri: str, name: str = EXPERIMENT_NAME) -> str:
    """The experiment id of `name` (`osml-training` by default), created when missing (with a local artifact root
    for SQLite), and tagged as model training so the UI opens it on its runs and models."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        if existing.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # created before the tag was set
            client.set_experiment_tag(existing.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return str(existing.experiment_id)
    root = sqlite_artifact_root(tracking_uri)
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    try:
        return str(
            client.create_experiment(
                name,
                artifact_location=root.as_uri() if root else None,
                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
            )
        )
    except MlflowException as exc:  # another job created it meanwhile
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return ensure_experiment(client, tracking_uri, name)


class DatabaseDatasetSource(DatasetSource):
    """Lineage for `postgresql://` datasetRefs (the backend's tables), which MLflow has no source type for."""

    def __init__(self, url: str) -> None:
        self.url = url

    @staticmethod
    def _get_source_type() -> str:
        return "database"

    def load(self, **kwargs: Any) -> str:
        return self.url

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return isinstance(raw_source, str) and raw_source.lower().startswith("postgres")

    @classmethod
    def _resolve(cls, raw_source: Any) -> DatabaseDatasetSource:
        return cls(mask_secrets(str(raw_source)))

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url}

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> DatabaseDatasetSource:
        return cls(str(source_dict["url"]))


def dataset_source(ref: str) -> DatasetSource:
    if DatabaseDatasetSource._can_resolve(ref):
        return DatabaseDatasetSource._resolve(ref)
    return resolve_dataset_source(mask_secrets(ref))
