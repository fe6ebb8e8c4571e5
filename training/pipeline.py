"""The one training entry (`osml train`, the MLproject, the facade's /train jobs): SLA + ETA + clusters.

One parent run per job; a child run per candidate (compare them in the MLflow UI) and one for the plain
baseline. Choices are made on expanding time folds (training/tune.py); each candidate's reported metrics come
from its evaluation model, refit on train + validation and scored on the test slice; the winner of each task is
refit on every labelled order (the served model), logged as a pyfunc (`osml.runtime`) and registered with the
pair's tags.
"""

from __future__ import annotations

import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

import mlflow
import numpy as np
import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, ColSpec, Schema, TensorSpec
from threadpoolctl import threadpool_limits

from osml import conventions, evaluation_slice, mlflow_model, model_files, profile, registry, train_requests
from osml.dataset_access import mask_secrets
from osml.experiments import ensure_experiment
from osml.runtime import Calibrator, EtaMinutesModel, FeatureEncoder, SlaRiskModel, XGBoostScorer
from osml.schema import CURRENT_SCHEMA_VERSION, REQUIRED_FEATURES, SCHEMAS
from training import by_point, plots
from training.calibration import fit_calibrator
from training.candidates import (
    DEFAULTS,
    PLAIN,
    PLAIN_ROUNDS,
    TASKS,
    TUNED,
    Fitted,
    Rows,
    Task,
    fit_booster,
    importances,
    openmp_threads,
    select,
)
from training.clustering import cluster_orders
from training.data.orders import load_orders
from training.evaluate import (
    choose_threshold,
    classification_metrics,
    eta_baseline_metrics,
    regression_metrics,
    sla_baseline_metrics,
)
from training.features import (
    FITTED_LATER_SNAPSHOTS,
    SNAPSHOTS_PER_ORDER,
    TrainingFrame,
    build_training_frame,
    check_snapshots,
)
from training.split import TimeSplit, time_split
from training.tracking import dataset_source
from training.tune import DEFAULT_TUNE_SECONDS, Assessment, FoldRows, assess, search

Progress = Callable[[float, str], None]
T = TypeVar("T")


# Required integer features are "long". Optional numerics are "Any": JSON gives int64 for 720 and float64 for
# 720.5 or for a column with gaps, and MLflow refuses int64 -> double; the encoder coerces them to float.
_LONG_FEATURES = frozenset({"createdHour", "createdDayOfWeek", "hasAssignee"})
_NS_PER_DAY = 86_400 * 10**9
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
    by_point: pd.DataFrame = field(default_factory=pd.DataFrame)  # training/by_point.py, one row per point


@dataclass(frozen=True)
class _Outcome:
    """A task's winner: its child run, the served model, the evaluation model's test metrics and plots."""

    run_id: str
    candidate: str
    model: SlaRiskModel | EtaMinutesModel
    metrics: dict[str, float]
    figures: Callable[[], dict[str, Figure]]  # drawn only for the winner
    test: by_point.Scored  # the evaluation model's predictions on the test slice


@dataclass(frozen=True)
class _Scored:
    """A candidate after its evaluation refit: fold choices, test metrics, what its served refit needs."""

    name: str
    assessment: Assessment
    calibrator: Calibrator | None
    latency_ms: float
    outcome: _Outcome  # its model is the evaluation model until the winner is refit for serving
    params: dict[str, Any]  # what its child run records besides the configuration and the fold scores
    metrics: dict[str, float]


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


class _Encoded:
    """The frame encoded with a vocabulary fitted on some of its rows (a model sees only its own rows' values)."""

    def __init__(self, frame: TrainingFrame, rows: np.ndarray, schema_version: str) -> None:
        self.encoder = FeatureEncoder.fit(frame.features.iloc[rows], schema_version=schema_version)
        self.x = self.encoder.encode(frame.features)


def _in_background(work: Callable[[], T], *, name: str) -> Future[T]:
    """`work()` on a daemon thread: its result, or its exception, comes from the Future. Daemon, so that an
    interrupt or an error of the thread waiting for it ends the run at once instead of after its fits."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as exc:  # handed to the waiting thread, which raises it
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


class _Progress:
    """Progress of both tasks at once: a fraction never goes back, and lines are written one at a time."""

    def __init__(self, report: Progress) -> None:
        self._report = report
        self._lock = threading.Lock()
        self._at = 0.0

    def __call__(self, fraction: float, message: str) -> None:
        with self._lock:
            self._at = max(self._at, fraction)
            self._report(self._at, message)


@dataclass(frozen=True)
class _Task:
    """One task's rows and naive baseline, checked before any fitting starts."""

    task: Task
    chosen: tuple[str, ...]  # its candidates
    folds: tuple[FoldRows, ...]
    evaluation_rows: Rows  # train + validation, as fitted
    test_rows: Rows  # as scored
    test_block: np.ndarray  # their positions in the frame
    y_test: np.ndarray  # in minutes for ETA
    w_test: np.ndarray
    baseline: dict[str, float]  # the naive baseline's test metrics


class _Trainer:
    def __init__(
        self,
        frame: TrainingFrame,
        split: TimeSplit,
        *,
        schema_version: str,
        experiment_id: str,
        random_state: int,
        tune_seconds: float,
        progress: Progress,
    ) -> None:
        self.experiment_id = experiment_id  # nested runs otherwise land in the default experiment
        self.frame = frame
        self.split = split
        self.random_state = random_state
        self.tune_seconds = tune_seconds
        self.progress = _Progress(progress)
        # each order weighs 1 where it is scored, over all its snapshots, and where it is fitted, over a sample
        # of them (training.features.snapshot_weights, fitting_weights)
        self.weights = frame.weight.to_numpy(dtype=np.float64)
        self.fit_weights = frame.fit_weight.to_numpy(dtype=np.float64)
        # a snapshot whose breach already happened (due date passed under the due-date rule) teaches and tests
        # nothing: the runtime answers it with 1.0
        self.sla_open = ~frame.breached_by_now.to_numpy(dtype=bool)
        self.days = frame.created_at.astype("datetime64[ns, UTC]").astype("int64").to_numpy() / _NS_PER_DAY
        before = self.days[split.before_test]
        self.span_days = max(float(before.max() - before.min()), 1.0 / 24)
        self.folds = tuple(_Encoded(frame, fold.fit, schema_version) for fold in split.folds)
        self.evaluation = _Encoded(frame, split.before_test, schema_version)
        self.served = _Encoded(frame, split.everything, schema_version)
        self.plain: dict[str, float] = {}  # the plain baseline's test metrics, both tasks
        self.plain_validation: dict[str, float] = {}

    def _labelled(self, task: Task, block: np.ndarray) -> np.ndarray:
        target = self.frame.sla if task == "sla" else self.frame.eta
        kept = np.isfinite(target.to_numpy(dtype=float)[block])
        if task == "sla":
            kept &= self.sla_open[block]
        return block[kept]

    def _rows(self, task: Task, encoded: _Encoded, block: np.ndarray) -> Rows:
        """The task's labelled rows of `block`, as they are scored."""
        return self._encoded(task, encoded, self._labelled(task, block), self.weights)

    def _fitting(self, task: Task, encoded: _Encoded, block: np.ndarray) -> Rows:
        """The task's labelled rows of `block` that models fit on, with their fitting weights."""
        rows = self._labelled(task, block)
        return self._encoded(task, encoded, rows[self.fit_weights[rows] > 0], self.fit_weights)

    def _encoded(self, task: Task, encoded: _Encoded, rows: np.ndarray, weights: np.ndarray) -> Rows:
        target = (self.frame.sla if task == "sla" else self.frame.eta).to_numpy(dtype=float)[rows]
        return Rows(encoded.x[rows], target if task == "sla" else np.log1p(target), weights[rows], self.days[rows])

    def _folds(self, task: Task) -> tuple[FoldRows, ...]:
        folds = tuple(
            FoldRows(encoded.encoder, self._fitting(task, encoded, fold.fit), self._rows(task, encoded, fold.score))
            for encoded, fold in zip(self.folds, self.split.folds, strict=True)
        )
        for fold in folds:
            if not len(fold.fit) or not len(fold.score):
                raise ValueError(f"a validation fold has no labeled rows for the {task.upper()} model")
            if task == "sla" and len(np.unique(fold.fit.y)) < 2:
                raise ValueError("a training fold holds a single SLA class: nothing to learn")
        return folds

    def run_tasks(self, names: tuple[str, ...] | None, parent_run_id: str) -> tuple[_Outcome, _Outcome]:
        """SLA and ETA side by side, each task's candidates under the parent run.

        The two tasks share nothing until registration, and neither keeps two cores busy alone (the ETA's
        absolute-error objective refreshes its leaves on one thread every round), so together they finish sooner
        than one after the other. Both are prepared (and their data checked) before either starts fitting.

        The ETA runs on a daemon thread and the SLA on this one, so that an interrupt (Ctrl-C) or an error ends
        the run at once instead of waiting for the other task to finish its fits.
        """
        sla_task, eta_task = (self._prepare(task, names) for task in TASKS)
        eta = _in_background(lambda: self._run_task(eta_task, parent_run_id), name="osml-eta")
        sla = self._run_task(sla_task, parent_run_id)
        return sla, eta.result()

    def _prepare(self, task: Task, names: tuple[str, ...] | None) -> _Task:
        evaluation_rows = self._fitting(task, self.evaluation, self.split.before_test)
        test_block = self._labelled(task, self.split.test)
        if not len(test_block):
            raise ValueError(f"the test slice has no labeled rows for the {task.upper()} model")
        y_test = (self.frame.sla if task == "sla" else self.frame.eta).to_numpy(dtype=float)[test_block]
        w_test = self.weights[test_block]
        # the naive baselines learn from what the models fit on
        y_before = evaluation_rows.y if task == "sla" else np.expm1(evaluation_rows.y)
        baseline = (sla_baseline_metrics if task == "sla" else eta_baseline_metrics)(
            y_before, y_test, evaluation_rows.w, w_test
        )
        return _Task(
            task,
            select(task, names),
            self._folds(task),
            evaluation_rows,
            self._rows(task, self.evaluation, self.split.test),
            test_block,
            y_test,
            w_test,
            baseline,
        )

    def _run_task(self, prepared: _Task, parent_run_id: str) -> _Outcome:
        task, chosen, folds = prepared.task, prepared.chosen, prepared.folds
        evaluation_rows, test_rows, test_block = prepared.evaluation_rows, prepared.test_rows, prepared.test_block
        y_test, w_test, baseline = prepared.y_test, prepared.w_test, prepared.baseline
        span = (0.12, 0.78)
        self.progress(span[0], f"{task.upper()}: plain baseline")
        plain_validation = self._plain(task, folds, evaluation_rows, test_rows, y_test, w_test)
        if TUNED in chosen:
            self.progress(span[0], f"{task.upper()}: searching configurations for {self.tune_seconds / 2:.0f} s")
            found = search(task, folds, seconds=self.tune_seconds / 2, seed=self.random_state, span_days=self.span_days)
            assessments = {"xgboost": found.default, TUNED: found.best}
            trials: pd.DataFrame | None = found.trials
        else:
            assessments = {"xgboost": assess(task, DEFAULTS[task], folds, seed=self.random_state)}
            trials = None
        configurations = {id(a): a for a in assessments.values()}
        # one configuration (the search kept the defaults, or had no time for more) wins whatever the choice
        # finds: its served refit need not wait for the evaluation refit
        early: Future[tuple[Rows, Fitted]] | None = None
        if len(configurations) == 1:
            (only,) = configurations.values()
            early = _in_background(lambda: self._fit_served(task, only), name=f"osml-{task}-served")
        probe = _records(self.frame.features.iloc[self.split.validation[:LATENCY_PROBE_ROWS]])
        scored: list[_Scored] = []
        for i, name in enumerate(chosen):
            self.progress(span[0] + (span[1] - span[0]) * (0.5 + i / (2 * len(chosen))), f"{task.upper()}: {name}")
            with mlflow.start_run(
                run_name=f"{task}/{name}", nested=True, experiment_id=self.experiment_id, parent_run_id=parent_run_id
            ) as child:
                mlflow.set_tags({"osml.task": task, "osml.candidate": name})
                # a search that found nothing better than the defaults (or had no time to) chose their
                # configuration: refit alike it is the same model, so it is fitted and measured once
                same = next((s for s in scored if s.assessment is assessments[name]), None)
                candidate = (
                    self._evaluate(task, name, assessments[name], folds, evaluation_rows, test_rows, test_block, w_test)
                    if same is None
                    else replace(same, name=name)
                )
                _log_candidate(task, candidate)
                scored.append(
                    replace(candidate, outcome=replace(candidate.outcome, run_id=child.info.run_id, candidate=name))
                )
                mlflow.log_metrics(_prefixed("baseline_", baseline))
                if name == TUNED and trials is not None:
                    mlflow.log_table(trials, "tuning/trials.json")
                    mlflow.log_metric("tuning_trials", len(trials))
        winner = _choose(task, _with_latencies(scored, probe), plain_validation)
        self.progress(span[1], f"{task.upper()}: refitting {winner.name} on every labeled order")
        served = self._served_model(
            task, winner, self._fit_served(task, winner.assessment) if early is None else early.result()
        )
        return _Outcome(
            winner.outcome.run_id,
            winner.name,
            served,
            {**winner.outcome.metrics, **_prefixed("baseline_", baseline)},
            winner.outcome.figures,
            winner.outcome.test,
        )

    def _plain(
        self,
        task: Task,
        folds: tuple[FoldRows, ...],
        evaluation_rows: Rows,
        test_rows: Rows,
        y_test: np.ndarray,
        w_test: np.ndarray,
    ) -> float:
        """The plain reference on validation (returned: AUC or MAE) and, refit before the test, on the test."""
        validation = assess(
            task, PLAIN[task], folds[-1:], seed=self.random_state, rounds=PLAIN_ROUNDS, early_stopping=False
        )
        fitted = fit_booster(
            task, PLAIN[task], self.evaluation.encoder, evaluation_rows, seed=self.random_state, rounds=PLAIN_ROUNDS
        )
        predicted = np.asarray(fitted.booster.inplace_predict(test_rows.x), dtype=np.float64)
        if task == "sla":
            threshold = choose_threshold(folds[-1].score.y, validation.predictions[-1], folds[-1].score.w)
            test = classification_metrics(y_test, predicted, threshold, w_test) | {"threshold": threshold}
            self.plain_validation["val_auc"] = validation.validation
        else:
            test = regression_metrics(y_test, np.clip(np.expm1(predicted), 0.0, None), w_test)
            self.plain_validation["val_mae_minutes"] = validation.validation
        self.plain |= test
        return validation.validation

    def _evaluate(
        self,
        task: Task,
        name: str,
        assessment: Assessment,
        folds: tuple[FoldRows, ...],
        evaluation_rows: Rows,
        test_rows: Rows,
        test_block: np.ndarray,
        w_test: np.ndarray,
    ) -> _Scored:
        """Refit on train + validation with the fold choices; its test metrics are the candidate's."""
        y_test = (self.frame.sla if task == "sla" else self.frame.eta).to_numpy(dtype=float)[test_block]
        rounds = assessment.rounds(evaluation_rows)
        started = time.perf_counter()
        fitted = fit_booster(
            task, assessment.params, self.evaluation.encoder, evaluation_rows, seed=self.random_state, rounds=rounds
        )
        fit_seconds = time.perf_counter() - started
        encoder = self.evaluation.encoder
        scorer = XGBoostScorer(fitted.booster, sample=evaluation_rows.x[-512:])
        params: dict[str, Any] = {
            "evaluation_rows": len(evaluation_rows),
            "evaluation_rounds": rounds,
            "folds": len(folds),
        } | assessment.rounds_params()
        raw_test = scorer(test_rows.x)
        calibrator: Calibrator | None = None
        if task == "sla":
            # calibrated on the newest out-of-fold block: under drift it is the best guess of the next one's rates
            last = folds[-1].score
            raw_last = assessment.predictions[-1]
            calibrator = fit_calibrator(raw_last, last.y, last.w)
            model: SlaRiskModel | EtaMinutesModel = SlaRiskModel(
                encoder, scorer, calibrator, overdue_is_breach=self.frame.sla_label_rule == "due_at"
            )
            p_last = calibrator(raw_last)
            threshold = choose_threshold(last.y, p_last, last.w)
            validation = classification_metrics(last.y, p_last, threshold, last.w)
            p_test = model._finish(raw_test)
            test = classification_metrics(y_test, p_test, threshold, w_test)
            params |= {"calibration": calibrator.method, "threshold": round(threshold, 6)}
            metrics = {**test, "threshold": threshold, **_prefixed("val_", validation)}
            figures = self._sla_figures(y_test, p_test, raw_test, threshold, encoder, fitted)
            on_test = by_point.Scored(test_block, p_test)
        else:
            model = EtaMinutesModel(encoder, scorer)
            last = folds[-1].score
            validation = regression_metrics(np.expm1(last.y), model._finish(assessment.predictions[-1]), last.w)
            predicted = model._finish(raw_test)
            test = regression_metrics(y_test, predicted, w_test)
            metrics = {**test, **_prefixed("val_", validation)}
            figures = self._eta_figures(y_test, predicted, encoder, fitted)
            on_test = by_point.Scored(test_block, predicted)
        logged = {"fit_seconds": fit_seconds, **_prefixed("", metrics)}
        outcome = _Outcome("", name, model, metrics, figures, on_test)
        return _Scored(name, assessment, calibrator, np.nan, outcome, params, logged)  # latency: _with_latencies

    @staticmethod
    def _sla_figures(
        y_test: np.ndarray,
        p_test: np.ndarray,
        raw_test: np.ndarray,
        threshold: float,
        encoder: FeatureEncoder,
        fitted: Fitted,
    ) -> Callable[[], dict[str, Figure]]:
        def figures() -> dict[str, Figure]:
            return {
                "sla_roc_pr": plots.roc_pr(y_test, p_test),
                "sla_calibration": plots.calibration(y_test, p_test, raw_test),
                "sla_confusion": plots.confusion(y_test, p_test, threshold),
                "sla_feature_importance": plots.feature_importance(
                    encoder.columns, importances(fitted.booster, encoder)
                ),
            }

        return figures

    @staticmethod
    def _eta_figures(
        y_test: np.ndarray, predicted: np.ndarray, encoder: FeatureEncoder, fitted: Fitted
    ) -> Callable[[], dict[str, Figure]]:
        def figures() -> dict[str, Figure]:
            return {
                "eta_residuals": plots.residuals(y_test, predicted),
                "eta_feature_importance": plots.feature_importance(
                    encoder.columns, importances(fitted.booster, encoder)
                ),
            }

        return figures

    def _fit_served(self, task: Task, assessment: Assessment) -> tuple[Rows, Fitted]:
        """A configuration refit on every labeled order, test slice included (and the rows it was fitted on)."""
        rows = self._fitting(task, self.served, self.split.everything)
        rounds = assessment.rounds(rows)
        fitted = fit_booster(task, assessment.params, self.served.encoder, rows, seed=self.random_state, rounds=rounds)
        return rows, fitted

    def _served_model(self, task: Task, winner: _Scored, served: tuple[Rows, Fitted]) -> SlaRiskModel | EtaMinutesModel:
        """The model that is registered: the winner's served refit with its calibration and drift profile."""
        rows, fitted = served
        scorer = XGBoostScorer(fitted.booster, sample=rows.x[-512:])
        with mlflow.start_run(run_id=winner.outcome.run_id, nested=True):
            mlflow.log_params({"served_rows": len(rows), "served_rounds": fitted.rounds})
        if task == "sla":
            assert winner.calibrator is not None
            model: SlaRiskModel | EtaMinutesModel = SlaRiskModel(
                self.served.encoder,
                scorer,
                winner.calibrator,
                overdue_is_breach=self.frame.sla_label_rule == "due_at",
            )
        else:
            model = EtaMinutesModel(self.served.encoder, scorer)
        model.profile = profile.of_model(model, rows.x)  # saved with it: the facade's drift reference
        return model


def _log_candidate(task: Task, candidate: _Scored) -> None:
    """A candidate's child run: its configuration, fold scores, evaluation refit and test metrics."""
    assessment = candidate.assessment
    mlflow.log_params({f"{candidate.name}.{k}": v for k, v in assessment.params.items()} | candidate.params)
    fold_metric = "auc" if task == "sla" else "mae_minutes"
    for i, value in enumerate(assessment.values):
        mlflow.log_metric(f"fold_{fold_metric}", value, step=i)
    mlflow.log_metrics({"fold_score": assessment.score, "cv_seconds": assessment.seconds} | candidate.metrics)


# Model choice: the best fold score wins, unless a candidate within this margin of it answers a single row faster
# (the facade predicts one order per request): SLA in AUC points, ETA as a share of the MAE. Neither may pick a
# candidate that loses to the plain baseline on the validation block.
SLA_AUC_MARGIN = 0.005
ETA_MAE_MARGIN = 0.01
LATENCY_PROBE_ROWS = 50


def _records(features: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as /predict would send them: absent values left out."""
    return [{str(k): v for k, v in row.items() if not pd.isna(v)} for row in features.to_dict(orient="records")]


def _predict_one_ms(models: Sequence[SlaRiskModel | EtaMinutesModel], rows: list[dict[str, Any]]) -> list[float]:
    """Per model, the median time of a one-row prediction, the models taking turns row by row.

    The two tasks train side by side: whatever the other task's fits take of the cores weighs on every candidate
    alike when they are timed in turn (timed one after the other, the same near-tie went either way between
    runs)."""
    for model in models:
        model.predict(rows[:1])  # warm-up
    seconds: list[list[float]] = [[] for _ in models]
    for row in rows:
        for model, times in zip(models, seconds, strict=True):
            started = time.perf_counter()
            model.predict([row])
            times.append(time.perf_counter() - started)
    return [float(np.median(times)) * 1000 for times in seconds]


def _with_latencies(scored: list[_Scored], probe: list[dict[str, Any]]) -> list[_Scored]:
    """The candidates with their one-row latency (each distinct model timed once), logged to their runs."""
    models = list({id(s.outcome.model): s.outcome.model for s in scored}.values())
    latency = dict(zip(map(id, models), _predict_one_ms(models, probe), strict=True))
    timed = [replace(s, latency_ms=latency[id(s.outcome.model)]) for s in scored]
    for candidate in timed:
        mlflow.log_metric("predict_one_ms", candidate.latency_ms, run_id=candidate.outcome.run_id)
    return timed


def _beats_plain(task: Task, validation: float, plain: float) -> bool:
    return validation >= plain if task == "sla" else validation <= plain


def _choose(task: Task, scored: list[_Scored], plain_validation: float) -> _Scored:
    best = max(s.assessment.score for s in scored)
    # scores are AUC (SLA) or -MAE/baseline (ETA): both higher-is-better
    floor = best - SLA_AUC_MARGIN if task == "sla" else best * (1 + ETA_MAE_MARGIN)
    eligible = [
        s
        for s in scored
        if s.assessment.score >= floor and _beats_plain(task, s.assessment.validation, plain_validation)
    ]
    if not eligible:  # nothing beats the plain baseline on validation: the best fold score, and the tag says so
        return max(scored, key=lambda s: s.assessment.score)
    return min(eligible, key=lambda s: (s.latency_ms, -s.assessment.score))


class _SliceDataset(PandasDataset):
    """A slice's lineage dataset whose schema is declared (the models' inputs and the two labels), not inferred:
    MLflow infers a frame's schema value by value in Python, 3 s for 100,000 orders."""

    def __init__(self, df: pd.DataFrame, *, source: DatasetSource, name: str, schema: Schema) -> None:
        super().__init__(df, source=source, name=name)
        self._declared = schema

    @property
    def schema(self) -> Schema:
        return self._declared


def _log_lineage(frame: TrainingFrame, split: TimeSplit, ref: str, schema_version: str) -> None:
    """The datasets each slice came from (its orders at creation), and which rows (and times) each model saw."""
    source = dataset_source(ref)
    table = frame.features.assign(slaBreached=frame.sla, resolutionMinutes=frame.eta)
    labels = [ColSpec("double", "slaBreached", required=False), ColSpec("double", "resolutionMinutes", required=False)]
    schema = Schema([*_signature(schema_version, "slaRisk").inputs.inputs, *labels])
    creation = frame.creation_rows()
    for context, rows in (("train", split.train), ("validation", split.validation), ("test", split.test)):
        orders = table.iloc[np.intersect1d(rows, creation)]
        dataset = _SliceDataset(orders, source=source, name=f"orders-{context}", schema=schema)
        mlflow.log_input(dataset, context=context)
    blocks = {
        "train": split.train,
        "validation": split.validation,
        "test": split.test,
        "evaluation": split.before_test,  # the model behind every reported metric
        "served": split.everything,  # the registered model
    }
    created = frame.created_at
    mlflow.log_params(
        {f"{name}_rows": len(rows) for name, rows in blocks.items()}
        | {f"{name}_from": str(created.iloc[rows].min()) for name, rows in blocks.items()}
        | {f"{name}_to": str(created.iloc[rows].max()) for name, rows in blocks.items()}
        | {f"{name}_orders": frame.order_id.iloc[rows].nunique() for name, rows in blocks.items()}
        | {"folds": len(split.folds)}
        | {f"fold_{i}_scores_from": str(created.iloc[fold.score].min()) for i, fold in enumerate(split.folds)}
    )


def _evaluation_slice(
    frame: TrainingFrame, sla: by_point.Scored, eta: by_point.Scored
) -> evaluation_slice.EvaluationSlice:
    """The test rows the winners' evaluation models were scored on, with their labels and those models' predictions
    (the newest `evaluation_slice.MAX_ROWS` rows, whole orders), as the promotion gate reads them."""
    n = len(frame.features)
    labels, predicted = np.full((2, n), np.nan), np.full((2, n), np.nan)
    for task, (target, scored) in enumerate(((frame.sla, sla), (frame.eta, eta))):
        labels[task, scored.rows] = target.to_numpy(dtype=float)[scored.rows]
        predicted[task, scored.rows] = scored.predicted
    rows = np.union1d(sla.rows, eta.rows)  # frame order is creation order
    if len(rows) > evaluation_slice.MAX_ROWS:  # keep the newest orders whole
        first = len(rows) - evaluation_slice.MAX_ROWS
        orders = frame.order_id.to_numpy()[rows]
        first += int(np.argmax(orders[first:] != orders[first]))
        rows = rows[first:]

    def seconds(instants: pd.Series) -> list[float]:
        return (instants.iloc[rows].astype("datetime64[ns, UTC]").astype("int64").to_numpy() / 1e9).tolist()

    def nullable(values: np.ndarray) -> list[float | None]:
        return [None if np.isnan(v) else float(v) for v in values[rows]]

    return evaluation_slice.EvaluationSlice(
        features={
            str(name): [None if pd.isna(v) else (v.item() if isinstance(v, np.generic) else v) for v in column]
            for name, column in frame.features.iloc[rows].items()
        },
        orderId=frame.order_id.iloc[rows].astype(str).tolist(),
        asOf=seconds(frame.as_of),
        createdAt=seconds(frame.created_at),
        slaBreached=nullable(labels[0]),
        remainingMinutes=nullable(labels[1]),
        weight=frame.weight.to_numpy(dtype=float)[rows].tolist(),
        slaRisk=nullable(predicted[0]),
        etaMinutes=nullable(predicted[1]),
    )


def _register(
    outcome: _Outcome,
    *,
    name: str,
    output: str,
    example: pd.DataFrame,
    tags: dict[str, str],
    evaluation: evaluation_slice.EvaluationSlice | None = None,
) -> ModelVersion:
    """Log the winner in its child run (with plots) and register it as a new version of `name`, linked to the run.

    The model is MLflow "models from code": osml/mlflow_model.py is its pyfunc, the runtime modules are its code,
    and its artifacts are data: the directory of `osml.model_files` and, with `evaluation`, the pair's evaluation
    slice (`osml.evaluation_slice`). No pickle anywhere.
    """
    with tempfile.TemporaryDirectory(prefix="osml-model-") as tmp:
        files = model_files.save(outcome.model, Path(tmp) / model_files.ARTIFACT)
        artifacts = {model_files.ARTIFACT: str(files)}
        if evaluation is not None:
            path = evaluation_slice.save(evaluation, Path(tmp) / evaluation_slice.ARTIFACT)
            artifacts[evaluation_slice.ARTIFACT] = str(path)
        code = model_files.stage_runtime_code(Path(tmp) / "code")
        with mlflow.start_run(run_id=outcome.run_id, nested=True):
            mlflow.set_tag("osml.selected", "true")
            _log_figures(outcome.figures())
            mlflow.pyfunc.log_model(
                name="model",
                python_model=mlflow_model.__file__,
                artifacts=artifacts,
                code_paths=[str(code)],
                signature=_signature(outcome.model.schema_version, output),
                input_example=example,
                pip_requirements=list(_PIP_REQUIREMENTS),
            )
    # through the run's URI, so that the version records its run (the UI links one to the other)
    return mlflow.register_model(f"runs:/{outcome.run_id}/model", name, tags=tags)


def _log_plain(experiment_id: str, plain: dict[str, float], plain_validation: dict[str, float]) -> None:
    """The child run `baseline/xgboost-plain`: test metrics of the plain reference, never registered."""
    with mlflow.start_run(run_name="baseline/xgboost-plain", nested=True, experiment_id=experiment_id):
        mlflow.set_tags({"osml.task": "baseline", "osml.candidate": "xgboost-plain"})
        mlflow.log_params({f"{task}.{k}": v for task in TASKS for k, v in PLAIN[task].items()})
        mlflow.log_params({"num_boost_round": PLAIN_ROUNDS, "calibration": "none"})
        mlflow.log_metrics(_prefixed("", plain | plain_validation))


def _log_by_point(
    frame: TrainingFrame, split: TimeSplit, sla: _Outcome, eta: _Outcome
) -> tuple[pd.DataFrame, dict[str, float]]:
    """The winners' test metrics per prediction point next to that point's baseline: a table and two plots."""
    table, metrics = by_point.evaluate(
        order_id=frame.order_id,
        elapsed_minutes=frame.elapsed_minutes,
        remaining=frame.eta,
        breached=frame.sla,
        sla_open=~frame.breached_by_now,
        fitted_on=split.before_test,
        sla=sla.test,
        eta=eta.test,
    )
    mlflow.log_table(table, "evaluation/by_point.json")
    mlflow.log_text(table.to_csv(index=False), "evaluation/by_point.csv")
    figures = {}
    if "eta_mae_minutes" in table:
        figures["eta_mae_by_elapsed"] = plots.by_elapsed(
            table,
            "eta_mae_minutes",
            "eta_baseline_mae_minutes",
            ylabel="MAE of remaining minutes",
            title="ETA by prediction point (test)",
        )
    if "sla_auc" in table:
        figures["sla_auc_by_elapsed"] = plots.by_elapsed(
            table, "sla_auc", "sla_baseline_auc", ylabel="ROC AUC", title="SLA by prediction point (test)"
        )
    _log_figures(figures)
    return table, metrics


def _plain_comparison(sla: _Outcome, eta: _Outcome, plain: dict[str, float]) -> dict[str, str]:
    sla_beats = sla.metrics["auc"] >= plain["auc"]
    eta_beats = eta.metrics["mae_minutes"] <= plain["mae_minutes"]
    return {
        "osml.sla_beats_plain": str(sla_beats).lower(),
        "osml.eta_beats_plain": str(eta_beats).lower(),
        "osml.beats_plain": str(sla_beats and eta_beats).lower(),
    }


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
    tune_seconds: float = DEFAULT_TUNE_SECONDS,
    snapshots_per_order: int = SNAPSHOTS_PER_ORDER,
    fitted_later_snapshots: int = FITTED_LATER_SNAPSHOTS,
) -> TrainResult:
    """Train, evaluate and register the SLA + ETA pair; raises DataError for bad data, ValueError for bad config.

    `tune_seconds` bounds the configuration search of the `xgboost_tuned` candidates (half per task);
    `snapshots_per_order` caps each order's snapshots on schema 4, of which the models fit on its creation and
    `fitted_later_snapshots` others (training time grows with those).
    """
    report: Progress = progress or (lambda _fraction, _message: None)
    names = tuple(candidates) if candidates is not None else None
    if names is not None:
        train_requests.check_candidates(names)  # fail on a bad candidate list before reading any data
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be between 0 and 1 (exclusive), got {test_size}")
    if not np.isfinite(tune_seconds) or tune_seconds < 0:
        raise ValueError(f"tune_seconds must be a number of seconds >= 0, got {tune_seconds}")
    check_snapshots(snapshots_per_order, fitted_later_snapshots)
    report(0.0, f"loading {mask_secrets(dataset_ref)}")
    data = load_orders(dataset_ref)
    report(0.08, f"building features (schema {schema_version}) for {len(data.orders)} orders")
    frame = build_training_frame(
        data,
        schema_version=schema_version,
        snapshots_per_order=snapshots_per_order,
        fitted_later=fitted_later_snapshots,
    )
    fitted_rows = int((frame.fit_weight > 0).sum())
    report(0.1, f"{len(frame.features)} snapshots of {frame.order_id.nunique()} orders, {fitted_rows} fitted")
    split = time_split(frame.created_at, test_size=test_size, groups=frame.order_id)

    uri = tracking_uri or conventions.tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = ensure_experiment(client, uri)
    trained_at = datetime.now(UTC).replace(microsecond=0)
    ref = mask_secrets(dataset_ref)
    trainer = _Trainer(
        frame,
        split,
        schema_version=schema_version,
        experiment_id=experiment_id,
        random_state=random_state,
        tune_seconds=tune_seconds,
        progress=report,
    )
    with (
        # OpenMP/BLAS pools of scikit-learn (KMeans, isotonic): see candidates.openmp_threads
        threadpool_limits(limits=openmp_threads(len(split.before_test))),
        mlflow.start_run(experiment_id=experiment_id, run_name=f"train {trained_at:%Y-%m-%d %H:%M:%S}") as parent,
    ):
        mlflow.set_tags(
            {
                conventions.TAG_DATASET_REF: ref,
                conventions.TAG_SCHEMA_VERSION: schema_version,
                "osml.metrics_from": "evaluation model (refit on train + validation, scored on test)",
                "osml.served_model": "refit on every labeled order (test included)",
                conventions.TAG_SLA_LABEL_RULE: frame.sla_label_rule,
            }
        )
        mlflow.log_params(
            {
                "dataset_ref": ref,
                "test_size": test_size,
                "random_state": random_state,
                "features_schema_version": schema_version,
                "orders": len(data.orders),
                "labeled_rows": len(frame.features),
                "labeled_orders": frame.order_id.nunique(),
                "waiting_markers": ",".join(frame.waiting_markers),
                "snapshots_per_order": snapshots_per_order,
                "fitted_later_snapshots": fitted_later_snapshots,
                "fitted_rows": fitted_rows,
                "candidates": ",".join(names) if names else "all",
                "tune_seconds": f"{tune_seconds:g}",  # as `mlflow run` logs the MLproject parameter
            }
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "source can be interpreted in multiple ways"
            _log_lineage(frame, split, dataset_ref, schema_version)
        sla, eta = trainer.run_tasks(names, parent.info.run_id)
        _log_plain(experiment_id, trainer.plain, trainer.plain_validation)
        points, point_metrics = _log_by_point(frame, split, sla, eta)

        report(0.8, "clustering order patterns")
        with mlflow.start_run(run_name="clusters/kmeans", nested=True, experiment_id=experiment_id):
            creation = frame.creation_rows()  # patterns of orders, not of snapshots: each order once, as opened
            clusters = cluster_orders(
                frame.features.iloc[creation].reset_index(drop=True),
                frame.eta.iloc[creation].reset_index(drop=True),
                frame.sla.iloc[creation].reset_index(drop=True),
                random_state=random_state,
            )
            mlflow.log_params({"k": clusters.k, "k_tried": ",".join(map(str, clusters.silhouettes))})
            mlflow.log_metrics(
                {"silhouette": clusters.silhouette} | {f"silhouette_k{k}": s for k, s in clusters.silhouettes.items()}
            )
            mlflow.log_table(clusters.profiles, "clusters/profiles.json")
            mlflow.log_text(clusters.profiles.to_csv(index=False), "clusters/profiles.csv")

        report(0.86, "registering the served models")
        tags = {
            conventions.TAG_SCHEMA_VERSION: schema_version,
            conventions.TAG_TRAINED_AT: trained_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            conventions.TAG_DATASET_REF: ref,
            conventions.TAG_SLA_LABEL_RULE: frame.sla_label_rule,
            conventions.TAG_WAITING_MARKERS: ",".join(frame.waiting_markers),
            conventions.TAG_ORDERS_UNTIL: frame.created_at.iloc[split.everything]
            .max()
            .ceil("s")
            .strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        example = _input_example(frame.features.iloc[split.validation])
        # the SLA version first: its registry number is what makes the pair's modelVersion unique
        registered = _register(
            sla,
            name=conventions.SLA_MODEL_NAME,
            output="slaRisk",
            example=example,
            tags=tags,
            evaluation=_evaluation_slice(frame, sla.test, eta.test),
        )
        model_version = registry.claim_model_version(client, registered)
        tags[conventions.TAG_MODEL_VERSION] = model_version
        _register(eta, name=conventions.ETA_MODEL_NAME, output="etaMinutes", example=example, tags=tags)
        mlflow.set_tags({conventions.TAG_MODEL_VERSION: model_version} | _plain_comparison(sla, eta, trainer.plain))
        parent_metrics = {
            **sla.metrics,
            **eta.metrics,
            **_prefixed("baseline_plain_", trainer.plain),
            **point_metrics,
            "silhouette": clusters.silhouette,
        }
        mlflow.log_metrics(_prefixed("", parent_metrics))
        mlflow.log_params({"sla_model": sla.candidate, "eta_model": eta.candidate, "clusters_k": clusters.k})
        if activate:
            report(0.95, f"activating {model_version}")
            registry.activate(client, model_version)
    report(1.0, f"done: {model_version}")
    return train_result(model_version, sla, eta, run_id=parent.info.run_id, report=parent_metrics, by_point=points)


def train_result(
    model_version: str,
    sla: _Outcome,
    eta: _Outcome,
    *,
    run_id: str,
    report: dict[str, float],
    by_point: pd.DataFrame | None = None,
) -> TrainResult:
    """What a training run answers (both engines): the facade's job metrics from the two winners' test figures."""
    return TrainResult(
        model_version=model_version,
        metrics={
            "auc": round(sla.metrics["auc"], 4),
            "f1": round(sla.metrics["f1"], 4),
            "maeMinutes": round(eta.metrics["mae_minutes"], 1),
        },
        run_id=run_id,
        report=report,
        chosen={"sla": sla.candidate, "eta": eta.candidate},
        by_point=pd.DataFrame() if by_point is None else by_point,
    )
