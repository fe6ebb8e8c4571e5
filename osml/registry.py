"""Model pairs in the MLflow Model Registry.

A *model version* in the facade's sense (`2026-05-01_001`) names a pair: one version of `os-sla-risk` and
one of `os-eta-minutes`, both tagged `modelVersion`. The alias `production` on both is the active pair;
the deprecated stage `Production` is mirrored for the UI and older tooling.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from datetime import date

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from osml.conventions import (
    ETA_MODEL_NAME,
    PRODUCTION_ALIAS,
    PRODUCTION_STAGE,
    SLA_MODEL_NAME,
    TAG_DATASET_REF,
    TAG_MODEL_VERSION,
    TAG_SCHEMA_VERSION,
    TAG_TRAINED_AT,
)


class UnknownModelVersion(LookupError):
    """No complete pair carries this modelVersion."""


@dataclass(frozen=True)
class ModelPair:
    model_version: str
    sla: ModelVersion
    eta: ModelVersion

    @property
    def schema_version(self) -> str:
        return str(self.sla.tags.get(TAG_SCHEMA_VERSION, ""))

    @property
    def trained_at(self) -> str:
        return str(self.sla.tags.get(TAG_TRAINED_AT, ""))

    @property
    def dataset_ref(self) -> str:
        return str(self.sla.tags.get(TAG_DATASET_REF, ""))

    @property
    def sla_uri(self) -> str:
        return f"models:/{SLA_MODEL_NAME}/{self.sla.version}"

    @property
    def eta_uri(self) -> str:
        return f"models:/{ETA_MODEL_NAME}/{self.eta.version}"


def _versions_by_tag(client: MlflowClient, name: str) -> dict[str, ModelVersion]:
    """modelVersion tag -> newest registry version of `name` carrying it."""
    try:
        found = client.search_model_versions(f"name='{name}'")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise
    by_tag: dict[str, ModelVersion] = {}
    for mv in sorted(found, key=lambda v: int(v.version)):
        tag = mv.tags.get(TAG_MODEL_VERSION)
        if tag:
            by_tag[tag] = mv
    return by_tag


def list_pairs(client: MlflowClient) -> list[ModelPair]:
    """Every complete pair, oldest first."""
    sla = _versions_by_tag(client, SLA_MODEL_NAME)
    eta = _versions_by_tag(client, ETA_MODEL_NAME)
    return [ModelPair(tag, sla[tag], eta[tag]) for tag in sorted(sla.keys() & eta.keys())]


def find_pair(client: MlflowClient, model_version: str) -> ModelPair:
    for pair in list_pairs(client):
        if pair.model_version == model_version:
            return pair
    raise UnknownModelVersion(model_version)


def production_pair(client: MlflowClient) -> ModelPair | None:
    """The pair under the alias `production`, or None when there is none (or the two aliases disagree)."""
    return aliased_pair(client, PRODUCTION_ALIAS)


def aliased_pair(client: MlflowClient, alias: str) -> ModelPair | None:
    """The pair under `alias` on both models, or None when there is none (or the two aliases disagree)."""
    try:
        sla = client.get_model_version_by_alias(SLA_MODEL_NAME, alias)
        eta = client.get_model_version_by_alias(ETA_MODEL_NAME, alias)
    except MlflowException as exc:
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            return None
        raise
    tag = sla.tags.get(TAG_MODEL_VERSION)
    if not tag or tag != eta.tags.get(TAG_MODEL_VERSION):
        return None
    return ModelPair(tag, sla, eta)


def activate(client: MlflowClient, model_version: str) -> ModelPair:
    """Point `production` at the pair (ETA first, SLA last: readers key on the SLA alias) and mirror the stage."""
    pair = find_pair(client, model_version)
    for name, mv in ((ETA_MODEL_NAME, pair.eta), (SLA_MODEL_NAME, pair.sla)):
        client.set_registered_model_alias(name, PRODUCTION_ALIAS, mv.version)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            # stages are deprecated; the alias is the source of truth, the stage only a mirror for the UI
            with contextlib.suppress(MlflowException):
                client.transition_model_version_stage(
                    name, mv.version, PRODUCTION_STAGE, archive_existing_versions=True
                )
    return pair


def next_model_version(client: MlflowClient, day: date) -> str:
    """`YYYY-MM-DD_NNN`: the next free sequence number for `day` across both models."""
    prefix = day.isoformat()
    taken = set(_versions_by_tag(client, SLA_MODEL_NAME)) | set(_versions_by_tag(client, ETA_MODEL_NAME))
    seq = 1 + max((int(t.rsplit("_", 1)[1]) for t in taken if t.startswith(prefix + "_")), default=0)
    return f"{prefix}_{seq:03d}"
