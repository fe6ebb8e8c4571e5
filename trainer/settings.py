"""Trainer configuration: environment variables with the `OSML_` prefix (plus MLflow's own MLFLOW_TRACKING_URI)."""

from __future__ import annotations

import os
from typing import Literal, Self

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from osml.conventions import embedded_database_url, tracking_uri


def available_cpus() -> int:
    """The CPUs this process may run on (a container's or taskset's share, not the whole machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class TrainerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OSML_", extra="ignore", populate_by_name=True)

    database_url: str = Field(default_factory=embedded_database_url)
    # how often an idle trainer looks for a queued job
    trainer_poll_seconds: float = Field(default=2.0, gt=0)
    # threads a training job may use (its OpenMP and BLAS pools); default: every CPU this trainer may use
    trainer_threads: int = Field(default_factory=available_cpus, ge=1)
    # A running job's trainer refreshes its heartbeat this often; a running job whose heartbeat is older than
    # job_stale_seconds was cut off (its trainer died) and reads `failed` (the facade reads the same setting).
    job_heartbeat_seconds: float = Field(default=5.0, gt=0)
    job_stale_seconds: float = Field(default=30.0, gt=0)
    log_level: str = "INFO"
    # where a job runs whose trainConfig names no engine: one process, or Dask (OSML_DASK_SCHEDULER, docs/scale.md)
    train_engine: Literal["single", "dask"] = "single"
    tracking_uri: str = Field(
        default_factory=tracking_uri, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "OSML_TRACKING_URI")
    )

    @model_validator(mode="after")
    def _heartbeat_within_staleness(self) -> Self:
        if self.job_stale_seconds <= self.job_heartbeat_seconds:
            raise ValueError("OSML_JOB_STALE_SECONDS must exceed OSML_JOB_HEARTBEAT_SECONDS")
        return self
