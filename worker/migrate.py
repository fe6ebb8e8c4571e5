"""Versioned schema (Alembic, `worker/migrations/`) for orders_prediction and the outbox.

The worker's own version table keeps it apart from any other Alembic history in the same database, and an
advisory lock lets a worker and a relay start together without racing on the first migration.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from sqlalchemy.exc import OperationalError

from worker.resilience import Backoff, StopRequested, TransientError, retry_transient

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE: Final = "osml_worker_alembic_version"
ADVISORY_LOCK_KEY: Final = 0x05A1_0004

_DRIVER = re.compile(r"^postgres(?:ql)?(?:\+\w+)?://")


def psycopg_url(url: str) -> str:
    """`postgresql://...` for psycopg, whatever driver suffix the configured URL carries."""
    return _DRIVER.sub("postgresql://", url, count=1)


def sqlalchemy_url(url: str) -> str:
    return _DRIVER.sub("postgresql+psycopg://", url, count=1)


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' is ConfigParser interpolation syntax; URLs may contain it (escaped passwords)
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision` (blocking: run it off the event loop)."""
    command.upgrade(alembic_config(database_url), revision)


async def upgrade_when_reachable(database_url: str, *, backoff: Backoff, stop: asyncio.Event) -> None:
    """Apply migrations at a service's start, waiting for the database if it is not reachable yet (a stack starting
    in any order); off the event loop."""

    async def attempt() -> None:
        try:
            await asyncio.to_thread(upgrade, database_url)
        except OperationalError as exc:
            raise TransientError(f"database not reachable for migrations: {exc.orig}") from exc

    await retry_transient(attempt, backoff=backoff, what="migrate", stop=stop)


async def migrated_on_start(database_url: str, *, enabled: bool, backoff: Backoff, stop: asyncio.Event) -> bool:
    """A service's start: migrate when `enabled` (OSML_MIGRATE_ON_START); False if a stop came while waiting."""
    if not enabled:
        return True
    try:
        await upgrade_when_reachable(database_url, backoff=backoff, stop=stop)
    except StopRequested:
        return False
    return True
