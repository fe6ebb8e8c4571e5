"""Live figures in MLflow: experiment `osml-live`, one run per model version per window, beside the training runs.

Each evaluation adds a point to the run's metric history (step = minutes since the epoch of the evaluation
instant), so the run's charts show live accuracy over time and the runs table its latest value. A run is created
on the first evaluation of its (version, window); it copies the training run's test metrics as `offline_*` and
links to it, so the live and the offline figures of a version sit side by side.

A shadow comparison (a challenger and production on the same shadow rows) logs to runs of its own, one per role:
tags `liveRows` = `shadow`, `role` = `challenger` or `production` (its part in the comparison, fixed) and the two
versions compared (`shadowProductionVersion`, `shadowChallengerVersion`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Final

from mlflow import MlflowClient
from mlflow.entities import Metric, Run

from osml import registry
from osml.conventions import (
    CHALLENGER_ALIAS,
    EXPERIMENT_NAME,
    LIVE_EXPERIMENT_NAME,
    PRODUCTION_ALIAS,
    TAG_MODEL_VERSION,
)
from osml.experiments import ensure_experiment
from worker.live.accuracy import LiveFigures, ShadowComparison

log = logging.getLogger("osml.worker.live")

TAG_WINDOW: Final = "liveWindow"
TAG_ROLE: Final = "role"
TAG_TRAINING_RUN: Final = "trainingRunId"
RETIRED: Final = "retired"
TAG_ROWS: Final = "liveRows"
TAG_SHADOW_PRODUCTION: Final = "shadowProductionVersion"
TAG_SHADOW_CHALLENGER: Final = "shadowChallengerVersion"
_SHADOW_TAGS: Final = (TAG_ROWS, TAG_SHADOW_PRODUCTION, TAG_SHADOW_CHALLENGER)
# what the training run reports on its test slice, under the names the live runs use too
OFFLINE_METRICS: Final = ("auc", "brier", "calibration_error", "mae_minutes")


def version_roles(client: MlflowClient) -> dict[str, str]:
    """modelVersion -> `production` / `challenger`, from the registry aliases; other versions are `retired`."""
    roles = {}
    for alias in (CHALLENGER_ALIAS, PRODUCTION_ALIAS):  # production last: it wins if one pair carries both
        pair = registry.aliased_pair(client, alias)
        if pair is not None:
            roles[pair.model_version] = alias
    return roles


def _training_run(client: MlflowClient, model_version: str) -> Run | None:
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.{TAG_MODEL_VERSION} = '{model_version}'", max_results=1
    )
    return runs[0] if runs else None


def _live_run(
    client: MlflowClient, experiment_id: str, model_version: str, window: str, shadow: Mapping[str, str]
) -> str:
    """The run of (version, window), of a shadow comparison when `shadow` holds its tags; created when new."""
    key = {TAG_MODEL_VERSION: model_version, TAG_WINDOW: window, **shadow}
    found = [
        run
        for run in client.search_runs(
            [experiment_id], filter_string=" and ".join(f"tags.{k} = '{v}'" for k, v in key.items())
        )
        # a served run has none of the shadow tags: the filter alone would also match the shadow runs
        if all(run.data.tags.get(tag) == key.get(tag) for tag in _SHADOW_TAGS)
    ]
    if found:
        return str(found[0].info.run_id)
    training = _training_run(client, model_version)
    if shadow:
        note = (
            f"Live accuracy of {model_version} on the shadow rows of the last {window}: "
            f"{shadow[TAG_SHADOW_CHALLENGER]} and {shadow[TAG_SHADOW_PRODUCTION]} scored on the same orders "
            "(docs/operations.md)."
        )
        run_name = f"{model_version} shadow {window} ({shadow[TAG_ROLE]})"
    else:
        note = f"Live accuracy of {model_version} on the predictions of the last {window} (docs/operations.md)."
        run_name = f"{model_version} live {window}"
    tags = dict(key)
    if training is not None:
        tags[TAG_TRAINING_RUN] = training.info.run_id
        link = f"#/experiments/{training.info.experiment_id}/runs/{training.info.run_id}"
        note += f" Training run: [{training.info.run_name}]({link})."
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    client.set_tag(run.info.run_id, "mlflow.note.content", note)
    if training is not None:
        now = int(time.time() * 1000)
        offline = [
            Metric(f"offline_{name}", training.data.metrics[name], now, 0)
            for name in OFFLINE_METRICS
            if name in training.data.metrics
        ]
        client.log_batch(run.info.run_id, metrics=offline)
    return str(run.info.run_id)


def log_live_figures(
    client: MlflowClient,
    tracking_uri: str,
    figures: Iterable[LiveFigures],
    *,
    roles: Mapping[str, str],
    evaluated_at: datetime,
    shadow: Sequence[ShadowComparison] = (),
) -> dict[tuple[str, str], str]:
    """Log each (version, window) to its run, and each shadow comparison's two figures to theirs; returns the
    served runs' ids by (version, window)."""
    experiment_id = ensure_experiment(client, tracking_uri, LIVE_EXPERIMENT_NAME)
    timestamp = int(evaluated_at.timestamp() * 1000)
    step = int(evaluated_at.timestamp() // 60)

    def log_run(figure: LiveFigures, role: str, shadow_tags: Mapping[str, str]) -> str:
        run_id = _live_run(client, experiment_id, figure.model_version, figure.window, shadow_tags)
        metrics = [Metric(name, value, timestamp, step) for name, value in figure.metrics().items()]
        client.log_batch(run_id, metrics=metrics)
        client.set_tag(run_id, TAG_ROLE, role)
        client.set_terminated(run_id, end_time=timestamp)
        return run_id

    runs = {
        (figure.model_version, figure.window): log_run(figure, roles.get(figure.model_version, RETIRED), {})
        for figure in figures
    }
    for comparison in shadow:
        versions = {
            TAG_ROWS: "shadow",
            TAG_SHADOW_PRODUCTION: comparison.production.model_version,
            TAG_SHADOW_CHALLENGER: comparison.challenger.model_version,
        }
        for role, figure in comparison.by_role():
            log_run(figure, role, {**versions, TAG_ROLE: role})
    log.info(
        "live figures logged to MLflow",
        extra={"runs": len(runs), "shadowRuns": 2 * len(shadow), "experiment": LIVE_EXPERIMENT_NAME},
    )
    return runs
