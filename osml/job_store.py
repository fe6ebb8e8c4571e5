"""Training jobs persisted in one table (SQLite embedded, PostgreSQL in the stack); blocking, call from threads.

The facade records a job (`queued`); a trainer claims it (`running`, its `owner`) and, while the job runs,
refreshes `heartbeat_at`; the job's own process writes progress and the outcome. Every transition is guarded
by the current status, so a job is claimed once however many trainers ask at the same moment, and a late write
can never revive a finished job. A running job whose heartbeat went stale was cut off with its trainer and is
marked `failed`. Queued jobs belong to no one: they wait for a trainer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    Float,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url

from osml.dataset_access import mask_secrets

ACTIVE = ("queued", "running")

metadata = MetaData()
training_jobs = Table(
    "osml_training_jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("progress", Float, nullable=False),
    Column("message", Text, nullable=True),
    Column("dataset_ref", Text, nullable=False),
    Column("train_config", JSON, nullable=False),
    Column("model_version", String(64), nullable=True),
    Column("metrics", JSON, nullable=True),
    Column("reason", Text, nullable=True),
    Column("owner", String(128), nullable=False),  # "" until a trainer claims the job
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    progress: float
    message: str | None
    dataset_ref: str
    train_config: dict[str, Any]
    model_version: str | None
    metrics: dict[str, float] | None
    reason: str | None
    created_at: datetime
    updated_at: datetime


def _utc(value: datetime) -> datetime:
    # SQLite hands timestamps back naive; they were written as UTC
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def make_engine(url: str, *, application_name: str = "osml") -> Engine:
    """An engine for OSML_DATABASE_URL: `postgresql://` uses psycopg 3 (its sessions named `application_name`
    in pg_stat_activity); a SQLite file's folder is created."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        return create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
    return create_engine(parsed, pool_pre_ping=True, connect_args={"application_name": application_name})


class JobStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create_schema(self) -> None:
        metadata.create_all(self._engine, tables=[training_jobs])

    def create(self, *, dataset_ref: str, train_config: dict[str, Any]) -> Job:
        now = datetime.now(UTC)
        job_id = str(uuid.uuid4())
        with self._engine.begin() as conn:
            conn.execute(
                insert(training_jobs).values(
                    id=job_id,
                    status="queued",
                    progress=0.0,
                    dataset_ref=mask_secrets(dataset_ref),  # the trainer reads with its own credentials
                    train_config=train_config,
                    owner="",
                    created_at=now,
                    updated_at=now,
                    heartbeat_at=now,
                )
            )
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(training_jobs).where(training_jobs.c.id == job_id)).mappings().first()
        if row is None:
            return None
        return Job(
            id=row["id"],
            status=row["status"],
            progress=row["progress"],
            message=row["message"],
            dataset_ref=row["dataset_ref"],
            train_config=row["train_config"],
            model_version=row["model_version"],
            metrics=row["metrics"],
            reason=row["reason"],
            created_at=_utc(row["created_at"]),
            updated_at=_utc(row["updated_at"]),
        )

    def _transition(self, job_id: str, *, allowed: tuple[str, ...], **values: Any) -> bool:
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            result = conn.execute(
                update(training_jobs)
                .where(training_jobs.c.id == job_id, training_jobs.c.status.in_(allowed))
                .values(updated_at=now, **values)
            )
        return result.rowcount == 1

    def claim(self, owner: str) -> Job | None:
        """The oldest queued job, now `running` under `owner`; None when no job is waiting.

        PostgreSQL locks the chosen row and skips rows other trainers hold (`FOR UPDATE SKIP LOCKED`), so
        concurrent claims take different jobs without waiting; SQLite has no row locks but serialises writes,
        and the UPDATE guarded by `status = 'queued'` lets exactly one claimant win a row.
        """
        while True:
            now = datetime.now(UTC)
            with self._engine.begin() as conn:
                job_id = conn.execute(
                    select(training_jobs.c.id)
                    .where(training_jobs.c.status == "queued")
                    .order_by(training_jobs.c.created_at, training_jobs.c.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                ).scalar()
                if job_id is None:
                    return None
                claimed = conn.execute(
                    update(training_jobs)
                    .where(training_jobs.c.id == job_id, training_jobs.c.status == "queued")
                    .values(status="running", owner=owner, message="starting", heartbeat_at=now, updated_at=now)
                ).rowcount
            if claimed == 1:
                return self.get(job_id)
            # another trainer took this row between our read and our write (SQLite only): take the next one

    def progress(self, job_id: str, fraction: float, message: str) -> bool:
        fraction = min(max(fraction, 0.0), 1.0)
        return self._transition(job_id, allowed=("running",), progress=fraction, message=message[:2000])

    def done(self, job_id: str, *, model_version: str, metrics: dict[str, float]) -> bool:
        return self._transition(
            job_id, allowed=("running",), status="done", progress=1.0, model_version=model_version, metrics=metrics
        )

    def fail(self, job_id: str, reason: str) -> bool:
        return self._transition(job_id, allowed=ACTIVE, status="failed", reason=reason[:4000])

    def heartbeat(self, owner: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(training_jobs)
                .where(training_jobs.c.owner == owner, training_jobs.c.status == "running")
                .values(heartbeat_at=datetime.now(UTC))
            )

    def fail_stale(self, *, stale_seconds: float) -> int:
        """Mark failed every running job whose trainer stopped refreshing it (the trainer died)."""
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            result = conn.execute(
                update(training_jobs)
                .where(
                    training_jobs.c.status == "running",
                    training_jobs.c.heartbeat_at < now - timedelta(seconds=stale_seconds),
                )
                .values(
                    status="failed",
                    reason="interrupted: the process running this job stopped before it finished",
                    updated_at=now,
                )
            )
        return int(result.rowcount)

    def fail_owned(self, owner: str, reason: str) -> int:
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            result = conn.execute(
                update(training_jobs)
                .where(training_jobs.c.owner == owner, training_jobs.c.status == "running")
                .values(status="failed", reason=reason, updated_at=now)
            )
        return int(result.rowcount)
