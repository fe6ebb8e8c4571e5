"""The training engines behind `osml train --engine`, `trainConfig.engine` and the MLproject: one entry for all.

- `single`: training/pipeline.py, the export read whole into one process;
- `dask`: training/distributed/engine.py, the export read partitioned and the boosters fitted by `xgboost.dask`
  on the cluster `DaskSettings` names (a scheduler, or a LocalCluster started for the run).
"""

from __future__ import annotations

from typing import Any, Literal

from osml.train_requests import ENGINES
from training.cluster import DaskSettings
from training.pipeline import TrainResult

Engine = Literal["single", "dask"]
__all__ = ["ENGINES", "Engine", "train_with"]


def train_with(engine: str, cluster: DaskSettings, **options: Any) -> TrainResult:
    """`training.pipeline.train(**options)` on the chosen engine; ValueError for an unknown one."""
    if engine == "dask":
        from training.distributed.engine import train_dask

        return train_dask(cluster=cluster, **options)
    if engine != "single":
        raise ValueError(f"unknown training engine {engine!r}; known: {', '.join(ENGINES)}")
    from training.pipeline import train

    return train(**options)
