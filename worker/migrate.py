"""Versioned schema (Alembic, `worker/migrations/`) for orders_prediction and the outbox.

The worker's own version table keeps it apart from any other Alembic history in the same database, and an
advisory lock lets a worker and a relay start together without racing on the first migration.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config

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
