"""The facade's core, independent of HTTP: predictions, model versions and training jobs.

`predict` and `predict_batch` only read the active pair (one attribute read) and compute; the registry and
job methods block on I/O and are meant to run in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from osml import registry
from osml.conventions import CHALLENGER_ALIAS
from osml.job_store import Job
from osml.precision import published_eta_minutes, published_sla_risk
from osml.predictor import Explainer
from osml.schema import SUPPORTED_SCHEMA_VERSIONS
from serving import errors
from serving.drift import DriftMonitor
from serving.jobs import TrainingJobs
from serving.metrics import ServingMetrics
from serving.model_store import ActivePair, ModelStore
from serving.payloads import PredictRequest, TrainConfig

if TYPE_CHECKING:  # serving.shadow predicts through this module
    from serving.shadow import ShadowScorer


def _registry_unavailable(exc: Exception) -> errors.RegistryUnavailable:
    return errors.RegistryUnavailable(f"the model registry is unavailable: {exc}")


class DataPlane:
    def __init__(
        self,
        *,
        store: ModelStore,
        client: Callable[[], MlflowClient],
        jobs: TrainingJobs,
        metrics: ServingMetrics,
        drift: DriftMonitor,
        shadow: ShadowScorer,
    ) -> None:
        self.store = store
        self.shadow = shadow
        self.drift = drift
        self.jobs = jobs
        self._client = client
        self._metrics = metrics

    def active(self) -> ActivePair:
        pair = self.store.current
        if pair is None:
            raise errors.ModelUnavailable("no model version is loaded: activate one (POST /models/activate)")
        return pair

    # -- predictions (CPU only, microseconds per row) --

    def predict(
        self, requests: Sequence[PredictRequest], *, explain: int | None = None
    ) -> tuple[str, list[dict[str, Any]]]:
        """/predict (a batch of one) and /predict/batch: see `predict_with`. The answers are computed first;
        a loaded challenger then gets a reference to them (serving/shadow.py), and nothing else."""
        pair = self.active()
        version, answers = predict_with(pair, requests, explain=explain)
        if self.shadow.store.current is not None:
            self.shadow.offer(version, requests, answers)
        self._metrics.predictions.labels(version).inc(len(answers))
        self.drift.record(
            pair,
            [vars(request.features) for request in requests],
            [a["predictions"]["slaRisk"] for a in answers],
            [a["predictions"]["etaMinutes"] for a in answers],
        )
        return version, answers

    def drift_report(self) -> dict[str, Any]:
        report = self.drift.report()
        if report is None:  # the serving pair has no training profile (trained before profiles were saved)
            return {
                "modelVersion": self.active().model_version,
                "role": "production",
                "windowRows": 0,
                "windowCapacity": 0,
                "windowFrom": None,
                "windowTo": None,
                "psi": {},
            }
        return report

    # -- model versions (blocking: registry I/O and model loading) --

    def list_models(self) -> list[dict[str, Any]]:
        try:
            client = self._client()
            pairs = registry.list_pairs(client)
            production = registry.production_pair(client)
            challenger = registry.aliased_pair(client, CHALLENGER_ALIAS)
        except (MlflowException, OSError) as exc:
            raise _registry_unavailable(exc) from exc
        refusals = self.store.refusals
        return [
            {
                "modelVersion": p.model_version,
                "trainedAt": p.trained_at,
                "featuresSchemaVersion": p.schema_version,
                "datasetRef": p.dataset_ref,
                "slaRegistryVersion": str(p.sla.version),
                "etaRegistryVersion": str(p.eta.version),
                "active": production is not None and production.model_version == p.model_version,
                "servable": p.schema_version in SUPPORTED_SCHEMA_VERSIONS,
                "challenger": challenger is not None and challenger.model_version == p.model_version,
            }
            | ({"gateRefused": refusals[p.model_version].figures()} if p.model_version in refusals else {})
            for p in pairs
        ]

    def activate(self, model_version: str, *, force: bool = False) -> dict[str, str]:
        """Through the promotion gate (GateRefused unless `force`), see `ModelStore.promote`."""
        try:
            client = self._client()
            pair = registry.find_pair(client, model_version)
        except registry.UnknownModelVersion as exc:
            raise errors.UnknownModelVersion(f"no model version {model_version} in the registry") from exc
        except (MlflowException, OSError) as exc:
            raise _registry_unavailable(exc) from exc
        try:
            active = self.store.promote(pair, commit=lambda: registry.activate(client, model_version), force=force)
        except MlflowException as exc:
            if exc.error_code == "PERMISSION_DENIED":  # a basic-auth tracking server and the read-only identity
                raise errors.Forbidden(
                    "this facade's MLflow identity may only read the registry: activate with the writer identity "
                    "(docs/security.md)"
                ) from exc
            raise _registry_unavailable(exc) from exc
        except OSError as exc:
            raise _registry_unavailable(exc) from exc
        return {"activeModelVersion": active.model_version}

    # -- training jobs (blocking: database) --

    def submit_training(self, dataset_ref: str, config: TrainConfig) -> dict[str, str]:
        job = self.jobs.submit(dataset_ref, config)
        return {"jobId": job.id, "status": job.status}

    def training_job(self, job_id: str) -> dict[str, Any]:
        return job_view(self.jobs.get(job_id))


def predict_with(
    pair: ActivePair, requests: Sequence[PredictRequest], *, explain: int | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """The one prediction path (the facade's routes, the worker's in-process scorer): the pair's version and one
    answer per request, each shaped as /predict answers, all from the same pair. With `explain` = k, each answer
    also carries `explanations`: both models' k largest feature contributions (docs/serving.md, "Explanations")."""
    # a pydantic model keeps its validated fields in its instance dict: read as is, where `model_dump` would copy
    # every row (a third of a large batch's prediction time)
    rows = [vars(request.features) for request in requests]
    sla = published_sla_risk(pair.sla.predict(rows))
    eta = published_eta_minutes(pair.eta.predict(rows))
    version = pair.model_version
    answers = [
        {
            "requestId": request.requestId,
            "orderId": request.orderId,
            "modelVersion": version,
            "predictions": {"slaRisk": s, "etaMinutes": e},
        }
        for request, s, e in zip(requests, sla, eta, strict=True)
    ]
    if explain is not None:
        if not isinstance(pair.sla, Explainer) or not isinstance(pair.eta, Explainer):
            raise errors.ExplanationsUnavailable(f"model version {version} cannot explain its predictions")
        why = zip(answers, pair.sla.explain(rows, explain), pair.eta.explain(rows, explain), strict=True)
        for answer, s_why, e_why in why:
            answer["explanations"] = {"slaRisk": s_why, "etaMinutes": e_why}
    return version, answers


def job_view(job: Job) -> dict[str, Any]:
    view: dict[str, Any] = {
        "jobId": job.id,
        "status": job.status,
        "progress": round(job.progress, 4),
        "modelVersion": job.model_version,
        "datasetRef": job.dataset_ref,
        "createdAt": job.created_at.isoformat().replace("+00:00", "Z"),
        "updatedAt": job.updated_at.isoformat().replace("+00:00", "Z"),
    }
    if job.metrics is not None:
        view["metrics"] = job.metrics
    if job.reason is not None:
        view["reason"] = job.reason
    return view
