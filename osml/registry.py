"""Model pairs in the MLflow Model Registry.

A *model version* in the facade's sense (`2026-05-01_001`) names a pair: one version of `os-sla-risk` and
one of `os-eta-minutes`, both tagged `modelVersion`. The alias `production` on both is the active pair;
the deprecated stage `Production` is mirrored for the UI and older tooling.

Any number of trainers and facades write here at once, and the registry has no transactions across calls, so
both writes are made safe by what the registry does atomically: it numbers the versions of a model (a
`modelVersion` is derived from that number, see `claim_model_version`), and each alias write is whole (the SLA
alias decides the active pair and the ETA alias is repaired to match, see `activate`).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from osml.conventions import (
    ETA_MODEL_NAME,
    PRODUCTION_ALIAS,
    PRODUCTION_STAGE,
    SLA_MODEL_NAME,
    TAG_DATASET_REF,
    TAG_MODEL_VERSION,
    TAG_ORDERS_UNTIL,
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
    def orders_until(self) -> str:
        """ISO creation instant of the newest order the pair trained on ("" for pairs trained before the tag)."""
        return str(self.sla.tags.get(TAG_ORDERS_UNTIL, ""))

    @property
    def sla_uri(self) -> str:
        return f"models:/{SLA_MODEL_NAME}/{self.sla.version}"

    @property
    def eta_uri(self) -> str:
        return f"models:/{ETA_MODEL_NAME}/{self.eta.version}"


class RegistryConflict(RuntimeError):
    """Concurrent writers kept the registry from settling within the attempts allowed."""


def _versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    """Every version of `name`, in registry order."""
    try:
        found = client.search_model_versions(f"name='{name}'")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise
    return sorted(found, key=lambda v: int(v.version))


def _versions_by_tag(client: MlflowClient, name: str) -> dict[str, ModelVersion]:
    """modelVersion tag -> the oldest registry version of `name` carrying it: while two trainers claim the same
    value, the oldest is the one that keeps it (`claim_model_version`)."""
    by_tag: dict[str, ModelVersion] = {}
    for mv in _versions(client, name):
        tag = mv.tags.get(TAG_MODEL_VERSION)
        if tag and tag not in by_tag:
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


def _lost_an_insert_race(exc: BaseException) -> bool:
    # MLflow's store writes an alias as read-then-insert: two first writes of one alias at once make one of them
    # fail on the unique key. Written again, it is an update and succeeds.
    return isinstance(exc, MlflowException) and "unique constraint" in str(exc).lower()


@retry(
    retry=retry_if_exception(_lost_an_insert_race),
    stop=stop_after_attempt(5),
    wait=wait_random_exponential(multiplier=0.05, max=1),
    reraise=True,
)
def _set_alias(client: MlflowClient, name: str, version: str) -> None:
    client.set_registered_model_alias(name, PRODUCTION_ALIAS, version)


def _mirror_stage(client: MlflowClient, pair: ModelPair) -> None:
    for name, mv in ((ETA_MODEL_NAME, pair.eta), (SLA_MODEL_NAME, pair.sla)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            # stages are deprecated; the alias is the source of truth, the stage only a mirror for the UI
            with contextlib.suppress(MlflowException):
                client.transition_model_version_stage(
                    name, mv.version, PRODUCTION_STAGE, archive_existing_versions=True
                )


def _settle_aliases(client: MlflowClient, *, attempts: int) -> ModelPair:
    """Make the ETA alias name the pair the SLA alias names, and return that pair.

    Each activation writes the SLA alias last, so the SLA alias holds the latest activation's choice; an
    activation that interleaved with another may have left the ETA alias on the other pair. Every activator
    re-reads after writing, so the last writer always sees (and repairs) what it left.
    """
    for _ in range(attempts):
        sla = client.get_model_version_by_alias(SLA_MODEL_NAME, PRODUCTION_ALIAS)
        eta = client.get_model_version_by_alias(ETA_MODEL_NAME, PRODUCTION_ALIAS)
        tag = sla.tags.get(TAG_MODEL_VERSION)
        if tag and tag == eta.tags.get(TAG_MODEL_VERSION):
            return ModelPair(tag, sla, eta)
        chosen = find_pair(client, str(tag))
        _set_alias(client, ETA_MODEL_NAME, chosen.eta.version)
    raise RegistryConflict(f"the production aliases did not settle within {attempts} attempts")


def activate(client: MlflowClient, model_version: str, *, attempts: int = 10) -> ModelPair:
    """Point `production` at the pair (ETA first, SLA last: the SLA alias decides) and mirror the stage.

    Returns the pair `production` names once both aliases agree: this one, unless a concurrent activation
    wrote its SLA alias after ours.
    """
    pair = find_pair(client, model_version)
    _set_alias(client, ETA_MODEL_NAME, pair.eta.version)
    _set_alias(client, SLA_MODEL_NAME, pair.sla.version)
    active = _settle_aliases(client, attempts=attempts)
    _mirror_stage(client, active)
    return active


def _sequence(tag: str, day: str) -> int | None:
    prefix, _, seq = tag.rpartition("_")
    return int(seq) if prefix == day and seq.isdigit() else None


def claim_model_version(client: MlflowClient, sla: ModelVersion, *, attempts: int = 10) -> str:
    """Derive the pair's `modelVersion` (`YYYY-MM-DD_NNN`) from a just-registered SLA version, tag it, verify
    it, and return it; register the ETA version with that value afterwards.

    The day is the SLA version's `trainedAt` tag (written with the version). NNN is the version's rank among
    that day's SLA versions at or below its registry number: the registry numbers versions atomically, so two
    trainers that finish at once get different ranks without coordinating. Deleting a version can shift
    ranks, hence the check after tagging: when an older SLA version, or any ETA version, already carries the
    value, this one moves past every value of its day. Of two SLA versions with one value, the older keeps it.
    """
    trained_at = str(sla.tags.get(TAG_TRAINED_AT) or "")
    if len(trained_at) < 10:
        raise ValueError(f"{SLA_MODEL_NAME} version {sla.version} has no {TAG_TRAINED_AT} tag to date it")
    day, number = trained_at[:10], int(sla.version)
    versions = _versions(client, SLA_MODEL_NAME)
    rank = sum(1 for v in versions if int(v.version) <= number and str(v.tags.get(TAG_TRAINED_AT, ""))[:10] == day)
    older = (_sequence(str(v.tags.get(TAG_MODEL_VERSION, "")), day) for v in versions if int(v.version) < number)
    seq = max(rank, 1 + max((s for s in older if s is not None), default=0))
    for _ in range(attempts):
        candidate = f"{day}_{seq:03d}"
        client.set_model_version_tag(SLA_MODEL_NAME, sla.version, TAG_MODEL_VERSION, candidate)
        sla_holders = [v for v in _versions(client, SLA_MODEL_NAME) if v.tags.get(TAG_MODEL_VERSION) == candidate]
        eta_versions = _versions(client, ETA_MODEL_NAME)
        taken = any(int(v.version) < number for v in sla_holders) or any(
            v.tags.get(TAG_MODEL_VERSION) == candidate for v in eta_versions
        )
        if not taken:
            return candidate
        tags = [str(v.tags.get(TAG_MODEL_VERSION, "")) for v in (*_versions(client, SLA_MODEL_NAME), *eta_versions)]
        seq = 1 + max((s for s in (_sequence(t, day) for t in tags) if s is not None), default=seq)
    raise RegistryConflict(f"no free modelVersion for {SLA_MODEL_NAME} version {sla.version} in {attempts} attempts")
