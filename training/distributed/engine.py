"""`osml train --engine dask`: training/pipeline.py's protocol on a Dask cluster, boosters fitted by `xgboost.dask`.

The export is read partitioned (training/data/partitioned.py) and the training frame built on the cluster
(training/distributed/frame.py); it stays there. The protocol is the single-process one: the time split by order
creation (training/split.py, on the gathered creation time of each order), choices on its expanding folds (rounds
by early stopping, kept per row), an evaluation model refit on train + validation whose test metrics are the
reported ones, the calibration map fitted on the newest fold's out-of-fold scores (training/calibration.py), and
the served model refit on every labelled order, logged and registered as the same models-from-code pair.

Only vectors come back to the client: per-order creation times, labels, weights and predictions of score blocks,
category counts, 50 rows for the latency probe and a sample of encoded rows for the model's drift profile.
What needs every row in one place is skipped, and the parent run's tag `osml.skipped` says what and why:
the Optuna search (`xgboost_tuned`, sequential trials on in-memory folds), the k-means order clusters, the
per-point evaluation table and the lineage datasets (both gather every row).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dask.array as da
import dask.dataframe as dd
import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
import xgboost.dask as dxgb
from distributed import Client, wait
from mlflow import MlflowClient

from osml import conventions, profile, registry, train_requests
from osml.dataset_access import mask_secrets
from osml.experiments import ensure_experiment
from osml.runtime import Calibrator, EtaMinutesModel, FeatureEncoder, SlaRiskModel, XGBoostScorer
from osml.schema import CURRENT_SCHEMA_VERSION, SCHEMAS
from training import by_point
from training.calibration import fit_calibrator
from training.candidates import (
    DEFAULTS,
    EARLY_STOPPING_ROUNDS,
    HALF_LIFE,
    MAX_ROUNDS,
    PLAIN,
    PLAIN_ROUNDS,
    TUNED,
    Fitted,
    Rows,
    Task,
    _mae_minutes,
    fitting_weight,
    select,
)
from training.cluster import DaskSettings, dask_client
from training.data.errors import DataError
from training.data.partitioned import ROWS_PER_PARTITION, read_partitioned
from training.distributed.frame import SNAP, build_distributed_frame
from training.evaluate import (
    choose_threshold,
    classification_metrics,
    eta_baseline_metrics,
    regression_metrics,
    sla_baseline_metrics,
)
from training.features import FITTED_LATER_SNAPSHOTS, SNAPSHOTS_PER_ORDER, check_snapshots
from training.pipeline import (
    Progress,
    TrainResult,
    _input_example,
    _log_plain,
    _Outcome,
    _plain_comparison,
    _predict_one_ms,
    _prefixed,
    _records,
    _register,
    _Trainer,
    train_result,
)
from training.split import time_split
from training.tune import DEFAULT_TUNE_SECONDS, Assessment, FoldRows, _baseline, fold_value

BLOCK = "_block"  # the row's time segment: 0..folds-1 fit-only history, folds = validation, folds + 1 = test
PROFILE_SAMPLE_ROWS = 200_000
_NS_PER_DAY = 86_400 * 10**9
SKIPPED = {
    TUNED: "the Optuna search runs sequential trials on in-memory folds; not distributed",
    "clusters": "k-means over every order needs them in one process",
    "by_point": "the per-point table needs every test row in one process",
    "lineage_datasets": "logging the slices as MLflow datasets gathers every row",
}


@dataclass(frozen=True)
class _Matrix:
    """One task's encoded rows on the cluster (x, y, w as Dask arrays with equal chunks) and their vectors here."""

    x: da.Array
    y: da.Array
    w: da.Array
    vectors: Rows  # y, w and days gathered; its matrix is empty (the rows stay on the cluster)

    def __len__(self) -> int:
        return len(self.vectors)


def _segments(part: pd.DataFrame, cuts: list[tuple[int, str]]) -> pd.Series:
    """Per row, how many cuts its order's (creation, id) reaches: the time split's block order, as `time_split`
    ranks orders (by creation, ties by id)."""
    created = part["created_at"].astype("datetime64[ns, UTC]").astype("int64").to_numpy()
    ids = part["order_id"].astype("str")
    block = np.zeros(len(part), dtype=np.int64)
    for at, order_id in cuts:
        block += (created > at) | ((created == at) & (ids >= order_id).to_numpy(dtype=bool))
    return pd.Series(block, index=part.index, name=BLOCK)


def _encode(part: pd.DataFrame, encoder: FeatureEncoder, task: Task, weight: str) -> pd.DataFrame:
    x = encoder.encode(part[list(encoder.columns)])
    out = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])], index=part.index)
    target = part["sla" if task == "sla" else "eta"].to_numpy(dtype=np.float64)
    out["y"] = target if task == "sla" else np.log1p(target)
    out["w"] = part[weight].to_numpy(dtype=np.float64)
    out["days"] = part["created_at"].astype("datetime64[ns, UTC]").astype("int64").to_numpy() / _NS_PER_DAY
    return out


class _Engine:
    def __init__(
        self,
        client: Client,
        rows: dd.DataFrame,
        folds: int,
        *,
        schema_version: str,
        seed: int,
        overdue: bool,
        experiment_id: str,
    ) -> None:
        self.client = client
        self.experiment_id = experiment_id  # nested runs otherwise land in the default experiment
        self.rows = rows
        self.n_folds = folds
        self.schema_version = schema_version
        self.seed = seed
        self.overdue_is_breach = overdue
        self.plain: dict[str, float] = {}
        self.plain_validation: dict[str, float] = {}
        categorical = SCHEMAS[schema_version][0]
        per_block = dd.compute(*(rows.groupby([BLOCK, c]).size() for c in categorical))

        def encoder(last_block: int) -> FeatureEncoder:
            counts = {
                c: found[found.index.get_level_values(0) <= last_block].groupby(level=1).sum()
                for c, found in zip(categorical, per_block, strict=True)
            }
            return FeatureEncoder.from_counts(counts, schema_version=schema_version)

        self.fold_encoders = tuple(encoder(i) for i in range(folds))
        self.evaluation = encoder(folds)
        self.served = encoder(folds + 1)

    def matrix(self, task: Task, encoder: FeatureEncoder, blocks: tuple[int, int], *, fitting: bool) -> _Matrix:
        """The task's labelled rows of blocks [first, last], encoded by `encoder`: those scored, or with `fitting`
        those fitted, with their fitting weights (training.features.fitting_weights)."""
        rows = self.rows
        target = rows["sla" if task == "sla" else "eta"]
        keep = rows[BLOCK].between(*blocks) & target.notnull() & np.isfinite(target)
        if task == "sla":
            keep &= ~rows["breached_by_now"]
        if fitting:
            keep &= rows["fit_weight"] > 0
        weight = "fit_weight" if fitting else "weight"
        columns = [f"f{i}" for i in range(len(encoder.columns))]
        sample = _encode(rows._meta, encoder, task, weight)
        encoded = _persisted(rows[keep].map_partitions(_encode, encoder, task, weight, meta=sample))
        y, w, days = dd.compute(encoded["y"], encoded["w"], encoded["days"])
        vectors = Rows(np.empty((len(y), 0), dtype=np.float32), y.to_numpy(), w.to_numpy(), days.to_numpy())
        return _Matrix(
            encoded[columns].to_dask_array(lengths=True),
            encoded["y"].to_dask_array(lengths=True),
            encoded["w"].to_dask_array(lengths=True),
            vectors,
        )

    def fit(
        self,
        task: Task,
        params: dict[str, Any],
        encoder: FeatureEncoder,
        train: _Matrix,
        *,
        rounds: int,
        stop_on: _Matrix | None = None,
    ) -> Fitted:
        """`training.candidates.fit_booster` on the cluster: the same configuration, rounds and stopping rule."""
        if HALF_LIFE in params:
            raise ValueError("recency-weighted configurations are not distributed")
        # nthread left out: each Dask worker runs XGBoost on its own threads
        config: dict[str, Any] = {**params, "seed": self.seed}
        feature_types = ["c"] * encoder.n_categorical + ["q"] * len(encoder.numeric)

        def dmatrix(m: _Matrix) -> dxgb.DaskDMatrix:
            return dxgb.DaskDMatrix(
                self.client, m.x, m.y, weight=m.w, feature_types=feature_types, enable_categorical=True
            )

        dtrain = dmatrix(train)
        if stop_on is None:
            booster = dxgb.train(self.client, config, dtrain, num_boost_round=rounds, verbose_eval=False)["booster"]
            return Fitted(booster, rounds)
        evals = [(dmatrix(stop_on), "score")]
        if task == "sla":
            config |= {"eval_metric": "auc"}
            extra: dict[str, Any] = {}
        else:
            # a custom metric is averaged over the workers' shares of the score block (XGBoost's dask rule)
            config |= {"disable_default_eval_metric": 1}
            extra = {"custom_metric": _mae_minutes}
        booster = dxgb.train(
            self.client,
            config,
            dtrain,
            num_boost_round=rounds,
            evals=evals,
            early_stopping_rounds=EARLY_STOPPING_ROUNDS,
            verbose_eval=False,
            **extra,
        )["booster"]
        best = booster.best_iteration + 1
        return Fitted(booster[:best], best)

    def predict(self, booster: xgb.Booster, m: _Matrix) -> np.ndarray:
        return np.asarray(dxgb.inplace_predict(self.client, booster, m.x).compute(), dtype=np.float64)

    def assess(
        self,
        task: Task,
        params: dict[str, Any],
        folds: Sequence[tuple[FeatureEncoder, _Matrix, _Matrix]],
        *,
        rounds: int = MAX_ROUNDS,
        early_stopping: bool = True,
    ) -> Assessment:
        """training.tune.assess: fit each fold (stopped on its score block), score it out of fold."""
        started = time.perf_counter()
        values, baselines, predictions = [], [], []
        weights, kept_rounds = [], []
        for encoder, fit, score in folds:
            fitted = self.fit(task, params, encoder, fit, rounds=rounds, stop_on=score if early_stopping else None)
            predicted = self.predict(fitted.booster, score)
            values.append(fold_value(task, score.vectors, predicted))
            baselines.append(_baseline(task, FoldRows(encoder, fit.vectors, score.vectors)))
            weights.append(fitting_weight(fit.vectors, params))
            kept_rounds.append(fitted.rounds)
            predictions.append(predicted)
        return Assessment(
            task,
            params,
            tuple(values),
            tuple(baselines),
            tuple(predictions),
            time.perf_counter() - started,
            tuple(weights),
            tuple(kept_rounds),
        )

    def sample(self, m: _Matrix) -> np.ndarray:
        """Up to PROFILE_SAMPLE_ROWS encoded rows, spread over every partition (the served model's profile)."""
        step = max(1, len(m) // PROFILE_SAMPLE_ROWS)
        return np.asarray(m.x[::step].compute(), dtype=np.float32)

    def run_task(self, task: Task, names: tuple[str, ...] | None, probe: list[dict[str, Any]]) -> _Outcome:
        chosen = [name for name in select(task, names) if name not in SKIPPED]
        if not chosen:
            raise ValueError(f"the dask engine trains none of {list(names or ())} for {task.upper()}: {SKIPPED[TUNED]}")
        folds = [
            (
                encoder,
                self.matrix(task, encoder, (0, i), fitting=True),
                self.matrix(task, encoder, (i + 1, i + 1), fitting=False),
            )
            for i, encoder in enumerate(self.fold_encoders)
        ]
        for _, fit, score in folds:
            if not len(fit) or not len(score):
                raise DataError(f"a validation fold has no labeled rows for the {task.upper()} model")
            if task == "sla" and len(np.unique(fit.vectors.y)) < 2:
                raise DataError("a training fold holds a single SLA class: nothing to learn")
        evaluation = self.matrix(task, self.evaluation, (0, self.n_folds), fitting=True)
        test = self.matrix(task, self.evaluation, (self.n_folds + 1, self.n_folds + 1), fitting=False)
        if not len(test):
            raise DataError(f"the test slice has no labeled rows for the {task.upper()} model")
        y_test = test.vectors.y if task == "sla" else np.expm1(test.vectors.y)
        y_before = evaluation.vectors.y if task == "sla" else np.expm1(evaluation.vectors.y)
        baseline = (sla_baseline_metrics if task == "sla" else eta_baseline_metrics)(
            y_before, y_test, evaluation.vectors.w, test.vectors.w
        )
        self._plain(task, folds, evaluation, test, y_test)
        assessment = self.assess(task, DEFAULTS[task], folds)
        name = chosen[0]
        with mlflow.start_run(run_name=f"{task}/{name}", nested=True, experiment_id=self.experiment_id) as child:
            mlflow.set_tags({"osml.task": task, "osml.candidate": name, "osml.engine": "dask"})
            outcome = self._evaluate(task, name, assessment, folds, evaluation, test, y_test, probe)
            mlflow.log_metrics(_prefixed("baseline_", baseline))
        del folds, evaluation, test  # their encoded rows leave the workers' memory before the largest one comes
        served_rows = self.matrix(task, self.served, (0, self.n_folds + 1), fitting=True)
        rounds = assessment.rounds(served_rows.vectors)
        fitted = self.fit(task, assessment.params, self.served, served_rows, rounds=rounds)
        sample = self.sample(served_rows)
        scorer = XGBoostScorer(fitted.booster, sample=sample[-512:])
        with mlflow.start_run(run_id=child.info.run_id, nested=True):
            mlflow.log_params({"served_rows": len(served_rows), "served_rounds": rounds})
        if task == "sla":
            assert outcome.calibrator is not None
            model: SlaRiskModel | EtaMinutesModel = SlaRiskModel(
                self.served, scorer, outcome.calibrator, overdue_is_breach=self.overdue_is_breach
            )
        else:
            model = EtaMinutesModel(self.served, scorer)
        model.profile = profile.of_model(model, sample)
        return _Outcome(
            child.info.run_id,
            name,
            model,
            {**outcome.metrics, **_prefixed("baseline_", baseline)},
            outcome.figures,
            outcome.test,
        )

    def _plain(
        self,
        task: Task,
        folds: Sequence[tuple[FeatureEncoder, _Matrix, _Matrix]],
        evaluation: _Matrix,
        test: _Matrix,
        y_test: np.ndarray,
    ) -> None:
        """The plain reference, as training/pipeline.py fits it: on the validation block and refit before the test."""
        validation = self.assess(task, PLAIN[task], folds[-1:], rounds=PLAIN_ROUNDS, early_stopping=False)
        fitted = self.fit(task, PLAIN[task], self.evaluation, evaluation, rounds=PLAIN_ROUNDS)
        predicted = self.predict(fitted.booster, test)
        last = folds[-1][2].vectors
        if task == "sla":
            threshold = choose_threshold(last.y, validation.predictions[-1], last.w)
            self.plain |= classification_metrics(y_test, predicted, threshold, test.vectors.w) | {
                "threshold": threshold
            }
            self.plain_validation["val_auc"] = validation.validation
        else:
            self.plain |= regression_metrics(y_test, np.clip(np.expm1(predicted), 0.0, None), test.vectors.w)
            self.plain_validation["val_mae_minutes"] = validation.validation

    def _evaluate(
        self,
        task: Task,
        name: str,
        assessment: Assessment,
        folds: Sequence[tuple[FeatureEncoder, _Matrix, _Matrix]],
        evaluation: _Matrix,
        test: _Matrix,
        y_test: np.ndarray,
        probe: list[dict[str, Any]],
    ) -> _Evaluated:
        rounds = assessment.rounds(evaluation.vectors)
        started = time.perf_counter()
        fitted = self.fit(task, assessment.params, self.evaluation, evaluation, rounds=rounds)
        fit_seconds = time.perf_counter() - started
        encoder = self.evaluation
        raw_test = self.predict(fitted.booster, test)
        scorer = XGBoostScorer(fitted.booster)
        mlflow.log_params({f"{name}.{k}": v for k, v in assessment.params.items()})
        mlflow.log_params(
            {
                "evaluation_rows": len(evaluation),
                "evaluation_rounds": rounds,
                "folds": len(folds),
            }
            | assessment.rounds_params()
        )
        for i, value in enumerate(assessment.values):
            mlflow.log_metric(f"fold_{'auc' if task == 'sla' else 'mae_minutes'}", value, step=i)
        mlflow.log_metrics(
            {"fold_score": assessment.score, "fit_seconds": fit_seconds, "cv_seconds": assessment.seconds}
        )
        last = folds[-1][2].vectors
        w_test = test.vectors.w
        calibrator: Calibrator | None = None
        if task == "sla":
            calibrator = fit_calibrator(assessment.predictions[-1], last.y, last.w)
            model: SlaRiskModel | EtaMinutesModel = SlaRiskModel(
                encoder, scorer, calibrator, overdue_is_breach=self.overdue_is_breach
            )
            p_last = calibrator(assessment.predictions[-1])
            threshold = choose_threshold(last.y, p_last, last.w)
            validation = classification_metrics(last.y, p_last, threshold, last.w)
            p_test = model._finish(raw_test)
            test_metrics = classification_metrics(y_test, p_test, threshold, w_test)
            mlflow.log_params({"calibration": calibrator.method, "threshold": round(threshold, 6)})
            metrics = {**test_metrics, "threshold": threshold, **_prefixed("val_", validation)}
            figures = _Trainer._sla_figures(y_test, p_test, raw_test, threshold, encoder, fitted)
            predicted = p_test
        else:
            model = EtaMinutesModel(encoder, scorer)
            validation = regression_metrics(np.expm1(last.y), model._finish(assessment.predictions[-1]), last.w)
            predicted = model._finish(raw_test)
            metrics = {**regression_metrics(y_test, predicted, w_test), **_prefixed("val_", validation)}
            figures = _Trainer._eta_figures(y_test, predicted, encoder, fitted)
        (latency_ms,) = _predict_one_ms([model], probe)
        mlflow.log_metrics({**_prefixed("", metrics), "predict_one_ms": latency_ms})
        return _Evaluated(metrics, calibrator, figures, by_point.Scored(np.arange(len(predicted)), predicted))


@dataclass(frozen=True)
class _Evaluated:
    metrics: dict[str, float]
    calibrator: Calibrator | None
    figures: Any
    test: by_point.Scored


def _check(names: tuple[str, ...] | None, test_size: float, tune_seconds: float) -> None:
    if names is not None:
        train_requests.check_candidates(names)
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be between 0 and 1 (exclusive), got {test_size}")
    if not np.isfinite(tune_seconds) or tune_seconds < 0:
        raise ValueError(f"tune_seconds must be a number of seconds >= 0, got {tune_seconds}")


def _persisted(frame: dd.DataFrame) -> dd.DataFrame:
    """`frame` persisted on the cluster, returned once its partitions exist.

    Waiting matters: a LocalCluster's scheduler runs in this process and turns the graph into tasks on a thread of
    its own, and dask's expressions cache their metadata in functools.cached_property, whose per-property locks on
    Python 3.11 deadlock when two threads walk overlapping expressions in different orders (the scheduler's thread
    materialising a persisted frame while this one builds the next query on it: the Dask training test hung so).
    """
    persisted = frame.persist()
    wait(persisted)
    return persisted


def train_dask(
    *,
    dataset_ref: str,
    cluster: DaskSettings,
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
    rows_per_partition: int = ROWS_PER_PARTITION,
) -> TrainResult:
    """training.pipeline.train on Dask (same arguments, same result and MLflow record, less what SKIPPED names)."""
    report: Progress = progress or (lambda _fraction, _message: None)
    names = tuple(candidates) if candidates is not None else None
    _check(names, test_size, tune_seconds)
    check_snapshots(snapshots_per_order, fitted_later_snapshots)
    with dask_client(cluster) as client:
        if client is None:
            raise ValueError("the dask engine needs a cluster: a scheduler, or OSML_DASK_WORKERS / --workers >= 1")
        report(0.0, f"reading {mask_secrets(dataset_ref)} in partitions on {_describe(client)}")
        data = read_partitioned(dataset_ref, rows_per_partition=rows_per_partition)
        frame = build_distributed_frame(
            data,
            schema_version=schema_version,
            snapshots_per_order=snapshots_per_order,
            fitted_later=fitted_later_snapshots,
        )
        rows = _persisted(frame.rows)
        report(0.08, f"building features (schema {schema_version}) on the cluster")
        creations = rows[rows[SNAP] == 0][["order_id", "created_at"]].compute().reset_index(drop=True)
        if creations.empty:
            raise DataError("nothing left after filtering: no order has a label", source=data.source)
        split = time_split(creations["created_at"], test_size=test_size, groups=creations["order_id"])
        firsts = [fold.score[0] for fold in split.folds] + [split.test[0]]
        created_ns = creations["created_at"].astype("datetime64[ns, UTC]").astype("int64").to_numpy()
        cuts = [(int(created_ns[i]), str(creations["order_id"].iloc[i])) for i in firsts]
        rows = _persisted(rows.assign(**{BLOCK: rows.map_partitions(_segments, cuts, meta=(BLOCK, "int64"))}))
        per_block = rows[BLOCK].value_counts().compute()
        n_rows = int(per_block.sum())
        report(0.1, f"{n_rows} snapshots of {len(creations)} orders")
        return _train(
            client,
            rows,
            split_orders=(creations, split),
            per_block=per_block,
            frame_facts=(frame.sla_label_rule, frame.waiting_markers, frame.orders),
            dataset_ref=dataset_ref,
            names=names,
            test_size=test_size,
            random_state=random_state,
            activate=activate,
            tracking_uri=tracking_uri,
            schema_version=schema_version,
            tune_seconds=tune_seconds,
            snapshots=(snapshots_per_order, fitted_later_snapshots),
            report=report,
        )


def _describe(client: Client) -> str:
    workers = client.scheduler_info().get("workers", {})
    return f"{len(workers)} Dask workers at {client.scheduler_info().get('address', '?')}"


def _train(
    client: Client,
    rows: dd.DataFrame,
    *,
    split_orders: tuple[pd.DataFrame, Any],
    per_block: pd.Series,
    frame_facts: tuple[str, tuple[str, ...], int],
    dataset_ref: str,
    names: tuple[str, ...] | None,
    test_size: float,
    random_state: int,
    activate: bool,
    tracking_uri: str | None,
    schema_version: str,
    tune_seconds: float,
    snapshots: tuple[int, int],
    report: Progress,
) -> TrainResult:
    """`snapshots`: the cap per order and how many of its later snapshots are fitted."""
    creations, split = split_orders
    label_rule, markers, n_orders = frame_facts
    n_folds = len(split.folds)
    uri = tracking_uri or conventions.tracking_uri()
    mlflow.set_tracking_uri(uri)
    registry_client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = ensure_experiment(registry_client, uri)
    trained_at = datetime.now(UTC).replace(microsecond=0)
    ref = mask_secrets(dataset_ref)
    engine = _Engine(
        client,
        rows,
        n_folds,
        schema_version=schema_version,
        seed=random_state,
        overdue=label_rule == "due_at",
        experiment_id=experiment_id,
    )
    probe_rows = rows[rows[BLOCK] == n_folds][list(engine.served.columns)].head(50, npartitions=-1)
    probe = _records(probe_rows)
    skipped = {k: v for k, v in SKIPPED.items() if k != TUNED or names is None or TUNED in names}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"train {trained_at:%Y-%m-%d %H:%M:%S}") as parent:
        mlflow.set_tags(
            {
                conventions.TAG_DATASET_REF: ref,
                conventions.TAG_SCHEMA_VERSION: schema_version,
                "osml.metrics_from": "evaluation model (refit on train + validation, scored on test)",
                "osml.served_model": "refit on every labeled order (test included)",
                conventions.TAG_SLA_LABEL_RULE: label_rule,
                "osml.engine": "dask",
                "osml.skipped": "; ".join(f"{k}: {v}" for k, v in skipped.items()),
            }
        )
        blocks = {
            "train": (0, n_folds - 1),
            "validation": (n_folds, n_folds),
            "test": (n_folds + 1, n_folds + 1),
            "evaluation": (0, n_folds),
            "served": (0, n_folds + 1),
        }
        ranges = {"train": split.train, "validation": split.validation, "test": split.test}
        ranges |= {"evaluation": split.before_test, "served": split.everything}
        created = creations["created_at"]
        mlflow.log_params(
            {
                "dataset_ref": ref,
                "test_size": test_size,
                "random_state": random_state,
                "features_schema_version": schema_version,
                "orders": n_orders,
                "labeled_rows": int(per_block.sum()),
                "labeled_orders": len(creations),
                "waiting_markers": ",".join(markers),
                "snapshots_per_order": snapshots[0],
                "fitted_later_snapshots": snapshots[1],
                "fitted_rows": int((rows["fit_weight"] > 0).sum().compute()),
                "candidates": ",".join(names) if names else "all",
                "tune_seconds": f"{tune_seconds:g}",
                "engine": "dask",
                "dask_workers": len(client.scheduler_info().get("workers", {})),
                "partitions": rows.npartitions,
            }
            | {f"{b}_rows": int(per_block[per_block.index.to_series().between(*r)].sum()) for b, r in blocks.items()}
            | {f"{b}_from": str(created.iloc[r].min()) for b, r in ranges.items()}
            | {f"{b}_to": str(created.iloc[r].max()) for b, r in ranges.items()}
            | {f"{b}_orders": len(r) for b, r in ranges.items()}
            | {"folds": n_folds}
            | {f"fold_{i}_scores_from": str(created.iloc[fold.score].min()) for i, fold in enumerate(split.folds)}
        )
        report(0.12, "SLA: folds, evaluation and served refits on the cluster")
        sla = engine.run_task("sla", names, probe)
        report(0.45, "ETA: folds, evaluation and served refits on the cluster")
        eta = engine.run_task("eta", names, probe)
        _log_plain(experiment_id, engine.plain, engine.plain_validation)

        report(0.86, "registering the served models")
        tags = {
            conventions.TAG_SCHEMA_VERSION: schema_version,
            conventions.TAG_TRAINED_AT: trained_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            conventions.TAG_DATASET_REF: ref,
            conventions.TAG_SLA_LABEL_RULE: label_rule,
            conventions.TAG_WAITING_MARKERS: ",".join(markers),
        }
        example = _input_example(probe_rows.reset_index(drop=True))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            registered = _register(sla, name=conventions.SLA_MODEL_NAME, output="slaRisk", example=example, tags=tags)
            model_version = registry.claim_model_version(registry_client, registered)
            tags[conventions.TAG_MODEL_VERSION] = model_version
            _register(eta, name=conventions.ETA_MODEL_NAME, output="etaMinutes", example=example, tags=tags)
        mlflow.set_tags({conventions.TAG_MODEL_VERSION: model_version} | _plain_comparison(sla, eta, engine.plain))
        parent_metrics = {**sla.metrics, **eta.metrics, **_prefixed("baseline_plain_", engine.plain)}
        mlflow.log_metrics(_prefixed("", parent_metrics))
        mlflow.log_params({"sla_model": sla.candidate, "eta_model": eta.candidate})
        if activate:
            report(0.95, f"activating {model_version}")
            registry.activate(registry_client, model_version)
    report(1.0, f"done: {model_version}")
    return train_result(model_version, sla, eta, run_id=parent.info.run_id, report=parent_metrics)
