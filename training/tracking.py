"""Dataset sources of training runs (the lineage MLflow shows for each slice); experiments are `osml.experiments`."""

from __future__ import annotations

from typing import Any

from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source

from osml.dataset_access import mask_secrets


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
