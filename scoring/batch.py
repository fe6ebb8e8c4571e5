"""A scoring run: the orders behind a datasetRef, scored with the `production` pair on Dask, written to a sink.

The orders in scope are those open at `as_of` (created by then, neither done nor canceled by then), or with
`scope="all"` every order created by then. Features are computed over every order created by `as_of` (the workload
counts look at closed orders too), then the rows in scope are predicted. Every row of a run carries the same
`predicted_at` (the as-of instant) and `score_run_id`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import dask.dataframe as dd
from mlflow import MlflowClient

from osml import registry
from osml.schema import SUPPORTED_SCHEMA_VERSIONS
from scoring.features import order_features
from scoring.predict import ScoringRun, empty_predictions, predict_partition
from scoring.sinks import Sink
from training.cluster import DaskSettings, dask_client
from training.data.partitioned import ROWS_PER_PARTITION, read_partitioned

Scope = Literal["open", "all"]
_IN_SCOPE = "_in_scope"


class NoProductionPair(LookupError):
    """The registry has no complete pair under the alias `production`."""


@dataclass(frozen=True)
class ScoreResult:
    run_id: str
    model_version: str
    as_of: datetime
    written: int  # rows added to the sink (0 for a re-run of a run already stored in PostgreSQL)
    seconds: float


def production_run(*, tracking_uri: str, run_id: str, as_of: datetime) -> ScoringRun:
    """The pair under `production` now, pinned by version for the whole run."""
    pair = registry.production_pair(MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri))
    if pair is None:
        raise NoProductionPair("no model pair is in production: train one and activate it (osml train --activate)")
    if pair.schema_version not in SUPPORTED_SCHEMA_VERSIONS:
        raise NoProductionPair(f"the production pair uses features schema {pair.schema_version!r}, unknown here")
    return ScoringRun(
        run_id=run_id,
        model_version=pair.model_version,
        sla_uri=pair.sla_uri,
        eta_uri=pair.eta_uri,
        tracking_uri=tracking_uri,
        predicted_at=as_of,
        schema_version=pair.schema_version,
    )


def predictions(orders: dd.DataFrame, run: ScoringRun, *, scope: Scope) -> dd.DataFrame:
    """`orders_prediction`-shaped rows (scoring.predict.PREDICTION_COLUMNS) for the orders in scope at the run's
    as-of instant."""
    as_of = run.predicted_at
    created = orders[orders["created_at"] <= as_of]
    if scope == "all":
        in_scope = created["created_at"].notnull()
    else:
        in_scope = ~(created["done_at"] <= as_of) & ~(created["canceled_at"] <= as_of)
    scoped = created.assign(**{_IN_SCOPE: in_scope})
    features = order_features(scoped, schema_version=run.schema_version, carry=(_IN_SCOPE,))
    chosen = features[features[_IN_SCOPE]].drop(columns=_IN_SCOPE)
    return chosen.map_partitions(predict_partition, run, meta=empty_predictions())


def score(
    dataset_ref: str,
    *,
    sink: Sink,
    run: ScoringRun,
    scope: Scope = "open",
    cluster: DaskSettings,
    rows_per_partition: int = ROWS_PER_PARTITION,
) -> ScoreResult:
    started = time.perf_counter()
    sink.prepare()
    with dask_client(cluster):
        data = read_partitioned(dataset_ref, rows_per_partition=rows_per_partition)
        written = sink.write(predictions(data.orders, run, scope=scope))
    return ScoreResult(
        run_id=run.run_id,
        model_version=run.model_version,
        as_of=run.predicted_at,
        written=written,
        seconds=time.perf_counter() - started,
    )
