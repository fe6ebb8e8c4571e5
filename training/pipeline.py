"""The one training entry (`osml train`, the MLproject, the facade's /train jobs): SLA + ETA + clusters.

One parent run per job; a child run per candidate (compare them in the MLflow UI); the best of each task on
the validation slice is logged as a pyfunc (`osml.runtime`) and registered with the pair's tags.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import from_pandas
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, ColSpec, Schema, TensorSpec
from threadpoolctl import threadpool_limits

from osml import conventions, mlflow_model, model_files, registry
from osml.runtime import EtaMinutesModel, FeatureEncoder, SlaRiskModel
from osml.schema import CURRENT_SCHEMA_VERSION, REQUIRED_FEATURES, SCHEMAS
from training import plots
from training.calibration import fit_calibrator
from training.candidates import FittedCandidate, Task, TrainingSet, openmp_threads, select
from training.clustering import cluster_orders
from training.data.orders import load_orders
from training.data.postgres import display_url
from training.evaluate import (
    choose_threshold,
    classification_metrics,
    eta_baseline_metrics,
    regression_metrics,
    sla_baseline_metrics,
)
from training.features import TrainingFrame, build_training_frame
from training.split import TimeSplit, time_split
from training.tracking import dataset_source, ensure_experiment

Progress = Callable[[float, str], None]

# Required integer features are "long". Optional numerics are "Any": JSON gives int64 for 720 and float64 for
# 720.5 or for a column with gaps, and MLflow refuses int64 -> double; the encoder coerces them to float.
_LONG_FEATURES = frozenset({"createdHour", "createdDayOfWeek", "hasAssignee"})
# What the registered model imports (osml/mlflow_model.py and osml.model_files.RUNTIME_MODULES), pinned to the
# versions it was trained and tested with here.
_PIP_REQUIREMENTS = tuple(f"{name}=={version(name)}" for name in ("mlflow", "xgboost", "numpy", "pandas", "pydantic"))


@dataclass(frozen=True)
class TrainResult:
    model_version: str  # "YYYY-MM-DD_NNN"
    metrics: dict[str, float]  # the facade's job payload: auc, f1, maeMinutes (test slice)
    run_id: str  # parent run
    report: dict[str, float] = field(default_factory=dict)  # every parent-run metric (winners + baselines)
    chosen: dict[str, str] = field(default_factory=dict)  # task -> winning candidate


@dataclass(frozen=True)
class _Outcome:
    """A task's winner: its child run, runtime model, test metrics and plots."""

    run_id: str
    candidate: str
    model: SlaRiskModel | EtaMinutesModel
    metrics: dict[str, float]
    figures: Callable[[], dict[str, Figure]]  # drawn only for the winner


def _signature(schema_version: str, output: str) -> ModelSignature:
    categorical, numeric = SCHEMAS[schema_version]
    inputs: list[ColSpec | TensorSpec] = [
        ColSpec("string", name, required=name in REQUIRED_FEATURES) for name in categorical
    ]
    inputs += [
        ColSpec("long", name) if name in _LONG_FEATURES else ColSpec(AnyType(), name, required=False)
        for name in numeric
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("double", output)]))


def _input_example(features: pd.DataFrame) -> pd.DataFrame:
    """One real row; absent optional values are left out (as a /predict payload would)."""
    row = features.iloc[[0]]
    return row[[c for c in row.columns if row[c].notna().all()]].reset_index(drop=True)


def _log_figures(figures: dict[str, Figure]) -> None:
    for name, figure in figures.items():
        mlflow.log_figure(figure, f"plots/{name}.png")
        plt.close(figure)


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}{k}": v for k, v in metrics.items() if np.isfinite(v)}


class _Trainer:
    def __init__(
        self,
        frame: TrainingFrame,
        split: TimeSplit,
        encoder: FeatureEncoder,
        *,
        experiment_id: str,
        random_state: int,
        progress: Progress,
    ) -> None:
        self.experiment_id = experiment_id  # nested runs otherwise land in the default experiment
        self.frame = frame
        self.split = split
        self.encoder = encoder
        self.random_state = random_state
        self.progress = progress
        self.encoded = encoder.encode(frame.features)

    def _rows(self, task: Task, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        target = self.frame.sla if task == "sla" else self.frame.eta
        values = target.to_numpy(dtype=float)[block]
        keep = np.isfinite(values)
        return block[keep], values[keep]

    def run_task(self, task: Task, names: tuple[str, ...] | None, span: tuple[float, float]) -> _Outcome:
        fits = select(task, names)
        train_rows, y_train = self._rows(task, self.split.train)
        val_rows, y_val = self._rows(task, self.split.validation)
        test_rows, y_test = self._rows(task, self.split.test)
        for rows, what in ((train_rows, "train"), (val_rows, "validation"), (test_rows, "test")):
            if len(rows) == 0:
                raise ValueError(f"the {what} slice has no labeled rows for the {task.upper()} model")
        if task == "sla" and len(np.unique(y_train)) < 2:
            raise ValueError("the training slice holds a single SLA class: nothing to learn")
        target_train = y_train if task == "sla" else np.log1p(y_train)
        target_val = y_val if task == "sla" else np.log1p(y_val)
        data = TrainingSet(
            self.encoder,
            self.encoded[train_rows],
            target_train,
            self.encoded[val_rows],
            target_val,
            self.random_state,
        )
        baseline = sla_baseline_metrics(y_train, y_test) if task == "sla" else eta_baseline_metrics(y_train, y_test)
        probe = _records(self.frame.features.iloc[val_rows[:LATENCY_PROBE_ROWS]])
        results: list[tuple[float, float, _Outcome]] = []  # (validation score, ms per predict_one, outcome)
        for i, (name, fit) in enumerate(fits.items()):
            fraction = span[0] + (span[1] - span[0]) * i / len(fits)
            self.progress(fraction, f"{task.upper()}: training candidate {name}")
            with mlflow.start_run(run_name=f"{task}/{name}", nested=True, experiment_id=self.experiment_id) as child:
                mlflow.set_tags({"osml.task": task, "osml.candidate": name})
                started = time.perf_counter()
                fitted = fit(task, data)
                fit_seconds = time.perf_counter() - started
                mlflow.log_params({f"{name}.{k}": v for k, v in fitted.params.items()})
                mlflow.log_params({"train_rows": len(train_rows), "validation_rows": len(val_rows)})
                if task == "sla":
                    score, outcome = self._evaluate_sla(child.info.run_id, fitted, data, test_rows, y_test)
                else:
                    score, outcome = self._evaluate_eta(child.info.run_id, fitted, data, test_rows, y_test)
                latency_ms = _predict_one_ms(outcome.model, probe)
                mlflow.log_metrics(
                    {"fit_seconds": fit_seconds, "predict_one_ms": latency_ms, **_prefixed("baseline_", baseline)}
                )
            results.append((score, latency_ms, outcome))
        winner = _choose(task, results)
        return _Outcome(
            winner.run_id,
            winner.candidate,
            winner.model,
            {**winner.metrics, **_prefixed("baseline_", baseline)},
            winner.figures,
        )

    def _evaluate_sla(
        self, run_id: str, fitted: FittedCandidate, data: TrainingSet, test_rows: np.ndarray, y_test: np.ndarray
    ) -> tuple[float, _Outcome]:
        raw_val = fitted.scorer(data.x_val)
        calibrator = fit_calibrator(raw_val, data.y_val)
        model = SlaRiskModel(self.encoder, fitted.scorer, calibrator)
        p_val = calibrator(raw_val)
        threshold = choose_threshold(data.y_val, p_val)
        validation = classification_metrics(data.y_val, p_val, threshold)
        raw_val_auc = classification_metrics(data.y_val, raw_val, threshold)["auc"]
        raw_test = fitted.scorer(self.encoded[test_rows])
        p_test = model._finish(raw_test)
        test = classification_metrics(y_test, p_test, threshold)
        mlflow.log_params({"calibration": calibrator.method, "threshold": round(threshold, 6)})
        mlflow.log_metrics({**_prefixed("", test), **_prefixed("val_", validation), "threshold": threshold})
        columns, importances = self.encoder.columns, fitted.importances

        def figures() -> dict[str, Figure]:
            drawn = {
                "sla_roc_pr": plots.roc_pr(y_test, p_test),
                "sla_calibration": plots.calibration(y_test, p_test, raw_test),
                "sla_confusion": plots.confusion(y_test, p_test, threshold),
            }
            if importances is not None:
                drawn["sla_feature_importance"] = plots.feature_importance(columns, importances)
            return drawn

        metrics = {**test, "threshold": threshold, **_prefixed("val_", validation)}
        return raw_val_auc, _Outcome(run_id, fitted.name, model, metrics, figures)

    def _evaluate_eta(
        self, run_id: str, fitted: FittedCandidate, data: TrainingSet, test_rows: np.ndarray, y_test: np.ndarray
    ) -> tuple[float, _Outcome]:
        model = EtaMinutesModel(self.encoder, fitted.scorer)
        validation = regression_metrics(np.expm1(data.y_val), model._finish(fitted.scorer(data.x_val)))
        predicted = model._finish(fitted.scorer(self.encoded[test_rows]))
        test = regression_metrics(y_test, predicted)
        mlflow.log_metrics({**_prefixed("", test), **_prefixed("val_", validation)})
        columns, importances = self.encoder.columns, fitted.importances

        def figures() -> dict[str, Figure]:
            drawn = {"eta_residuals": plots.residuals(y_test, predicted)}
            if importances is not None:
                drawn["eta_feature_importance"] = plots.feature_importance(columns, importances)
            return drawn

        # lower validation MAE is better; the caller keeps the highest score
        return -validation["mae_minutes"], _Outcome(
            run_id, fitted.name, model, {**test, **_prefixed("val_", validation)}, figures
        )


# Model choice: the best validation score wins, unless a candidate within this margin of it answers a single
# row faster (the facade predicts one order per request): SLA in AUC points, ETA as a share of the MAE.
SLA_AUC_MARGIN = 0.005
ETA_MAE_MARGIN = 0.01
LATENCY_PROBE_ROWS = 50


def _records(features: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as /predict would send them: absent values left out."""
    return [{str(k): v for k, v in row.items() if not pd.isna(v)} for row in features.to_dict(orient="records")]


def _predict_one_ms(model: SlaRiskModel | EtaMinutesModel, rows: list[dict[str, Any]]) -> float:
    model.predict(rows[:1])  # warm-up
    started = time.perf_counter()
    for row in rows:
        model.predict([row])
    return (time.perf_counter() - started) * 1000 / len(rows)


def _choose(task: Task, results: list[tuple[float, float, _Outcome]]) -> _Outcome:
    best = max(score for score, _, _ in results)
    # scores are AUC (SLA) or -MAE (ETA): both higher-is-better
    floor = best - SLA_AUC_MARGIN if task == "sla" else best * (1 + ETA_MAE_MARGIN)
    eligible = [(latency, -score, outcome) for score, latency, outcome in results if score >= floor]
    return min(eligible, key=lambda item: (item[0], item[1]))[2]


def _log_lineage(frame: TrainingFrame, split: TimeSplit, ref: str) -> None:
    source = dataset_source(ref)
    table = frame.features.assign(slaBreached=frame.sla, resolutionMinutes=frame.eta)
    for context, rows in (("train", split.train), ("validation", split.validation), ("test", split.test)):
        dataset = from_pandas(table.iloc[rows], source=source, name=f"orders-{context}")
        mlflow.log_input(dataset, context=context)
    mlflow.log_params(
        {
            f"{context}_from": str(frame.created_at.iloc[rows].min())
            for context, rows in (("train", split.train), ("validation", split.validation), ("test", split.test))
        }
        | {"test_to": str(frame.created_at.iloc[split.test].max())}
    )


def _register(outcome: _Outcome, *, name: str, output: str, example: pd.DataFrame, tags: dict[str, str]) -> None:
    """Log the winner in its child run (with plots) and register it as a new version of `name`, linked to the run.

    The model is MLflow "models from code": osml/mlflow_model.py is its pyfunc, the runtime modules are its code,
    and its one artifact is the data directory of `osml.model_files` (no pickle anywhere).
    """
    with tempfile.TemporaryDirectory(prefix="osml-model-") as tmp:
        files = model_files.save(outcome.model, Path(tmp) / model_files.ARTIFACT)
        code = model_files.stage_runtime_code(Path(tmp) / "code")
        with mlflow.start_run(run_id=outcome.run_id, nested=True):
            mlflow.set_tag("osml.selected", "true")
            _log_figures(outcome.figures())
            mlflow.pyfunc.log_model(
                name="model",
                python_model=mlflow_model.__file__,
                artifacts={model_files.ARTIFACT: str(files)},
                code_paths=[str(code)],
                signature=_signature(outcome.model.schema_version, output),
                input_example=example,
                pip_requirements=list(_PIP_REQUIREMENTS),
            )
    # through the run's URI, so that the version records its run (the UI links one to the other)
    mlflow.register_model(f"runs:/{outcome.run_id}/model", name, tags=tags)


def train(
    *,
    dataset_ref: str,
    test_size: float = 0.2,
    random_state: int = 42,
    activate: bool = False,
    progress: Progress | None = None,
    tracking_uri: str | None = None,
    candidates: Sequence[str] | None = None,
    schema_version: str = CURRENT_SCHEMA_VERSION,
) -> TrainResult:
    """Train, evaluate and register the SLA + ETA pair; raises DataError for bad data, ValueError for bad config."""
    report: Progress = progress or (lambda _fraction, _message: None)
    names = tuple(candidates) if candidates is not None else None
    if names is not None:
        select("sla", names), select("eta", names)  # fail on a bad candidate list before reading any data
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be between 0 and 1 (exclusive), got {test_size}")
    report(0.0, f"loading {display_url(dataset_ref)}")
    data = load_orders(dataset_ref)
    report(0.08, f"building features (schema {schema_version}) for {len(data.orders)} orders")
    frame = build_training_frame(data, schema_version=schema_version)
    split = time_split(frame.created_at, test_size=test_size, tie_breaker=frame.order_id)
    encoder = FeatureEncoder.fit(frame.features.iloc[split.train], schema_version=schema_version)

    uri = tracking_uri or conventions.tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = ensure_experiment(client, uri)
    trained_at = datetime.now(UTC).replace(microsecond=0)
    ref = display_url(dataset_ref)
    trainer = _Trainer(frame, split, encoder, experiment_id=experiment_id, random_state=random_state, progress=report)
    sla_count, eta_count = len(select("sla", names)), len(select("eta", names))
    with (
        # OpenMP/BLAS pools of scikit-learn (HistGradientBoosting, KMeans): see candidates.openmp_threads
        threadpool_limits(limits=openmp_threads(len(split.train))),
        mlflow.start_run(experiment_id=experiment_id, run_name=f"train {trained_at:%Y-%m-%d %H:%M:%S}") as parent,
    ):
        mlflow.set_tags({conventions.TAG_DATASET_REF: ref, conventions.TAG_SCHEMA_VERSION: schema_version})
        mlflow.log_params(
            {
                "dataset_ref": ref,
                "test_size": test_size,
                "random_state": random_state,
                "features_schema_version": schema_version,
                "orders": len(data.orders),
                "labeled_rows": len(frame.features),
                "train_rows": len(split.train),
                "validation_rows": len(split.validation),
                "test_rows": len(split.test),
                "candidates": ",".join(names) if names else "all",
            }
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "source can be interpreted in multiple ways"
            _log_lineage(frame, split, dataset_ref)
        total = sla_count + eta_count
        sla = trainer.run_task("sla", names, (0.12, 0.12 + 0.66 * sla_count / total))
        eta = trainer.run_task("eta", names, (0.12 + 0.66 * sla_count / total, 0.78))

        report(0.8, "clustering order patterns")
        with mlflow.start_run(run_name="clusters/kmeans", nested=True, experiment_id=experiment_id):
            clusters = cluster_orders(frame.features, frame.eta, frame.sla, random_state=random_state)
            mlflow.log_params({"k": clusters.k, "k_tried": ",".join(map(str, clusters.silhouettes))})
            mlflow.log_metrics(
                {"silhouette": clusters.silhouette} | {f"silhouette_k{k}": s for k, s in clusters.silhouettes.items()}
            )
            mlflow.log_table(clusters.profiles, "clusters/profiles.json")
            mlflow.log_text(clusters.profiles.to_csv(index=False), "clusters/profiles.csv")

        report(0.86, "registering the best models")
        model_version = registry.next_model_version(client, trained_at.date())
        tags = {
            conventions.TAG_MODEL_VERSION: model_version,
            conventions.TAG_SCHEMA_VERSION: schema_version,
            conventions.TAG_TRAINED_AT: trained_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            conventions.TAG_DATASET_REF: ref,
        }
        example = _input_example(frame.features.iloc[split.validation])
        for name, outcome, output in (
            (conventions.SLA_MODEL_NAME, sla, "slaRisk"),
            (conventions.ETA_MODEL_NAME, eta, "etaMinutes"),
        ):
            _register(outcome, name=name, output=output, example=example, tags=tags)
        mlflow.set_tag(conventions.TAG_MODEL_VERSION, model_version)
        parent_metrics = {**sla.metrics, **eta.metrics, "silhouette": clusters.silhouette}
        mlflow.log_metrics(_prefixed("", parent_metrics))
        mlflow.log_params({"sla_model": sla.candidate, "eta_model": eta.candidate, "clusters_k": clusters.k})
        if activate:
            report(0.95, f"activating {model_version}")
            registry.activate(client, model_version)
    report(1.0, f"done: {model_version}")
    return TrainResult(
        model_version=model_version,
        metrics={
            "auc": round(sla.metrics["auc"], 4),
            "f1": round(sla.metrics["f1"], 4),
            "maeMinutes": round(eta.metrics["mae_minutes"], 1),
        },
        run_id=parent.info.run_id,
        report=parent_metrics,
        chosen={"sla": sla.candidate, "eta": eta.candidate},
    )
