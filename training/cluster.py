"""Where Dask work runs: a scheduler's address (`tcp://host:8786`), a `LocalCluster` started for the job, or this
process alone. Batch scoring uses it; the settings are those of the trainer tier (`OSML_DASK_*`).

A `LocalCluster` uses worker processes with one thread each: the partition functions are pandas/numpy code that
holds the GIL for much of its time, so processes, not threads, are what run them side by side.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Annotated

import dask
from distributed import Client, LocalCluster
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DaskSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OSML_DASK_", extra="ignore")

    # a running scheduler (`tcp://dask-scheduler:8786`); unset: a LocalCluster of `workers` processes
    scheduler: str | None = None
    # LocalCluster size; 0 runs every task in this process (no cluster, dask's synchronous scheduler)
    workers: Annotated[int, Field(ge=0, le=256)] = 2
    # per LocalCluster worker: past it the worker spills to disk, then is restarted ("auto": RAM / workers)
    memory_limit: str = "auto"


@contextlib.contextmanager
def dask_client(settings: DaskSettings) -> Iterator[Client | None]:
    """A client for the configured engine for the duration of the block; None when work runs in this process."""
    if settings.scheduler:
        with Client(settings.scheduler, timeout="30s") as client:
            yield client
        return
    if settings.workers == 0:
        with dask.config.set(scheduler="synchronous"):
            yield None
        return
    with (
        LocalCluster(
            n_workers=settings.workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=settings.memory_limit,
            dashboard_address=None,
            silence_logs=logging.WARNING,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
