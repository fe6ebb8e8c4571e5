"""The worker's schema and outbox housekeeping on a real PostgreSQL database.

- The migrations go down to nothing and up again (a rollback of a deploy is possible).
- The relay prunes only rows sent before the retention window; an unsent row is never deleted, however old.
"""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from alembic import command

from worker.migrate import VERSION_TABLE, alembic_config, upgrade
from worker.relay import OutboxRelay

pytestmark = pytest.mark.integration

DAY_S = 86_400


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {name for (name,) in rows}


def test_the_migrations_go_down_to_nothing_and_up_again(pg_database: str) -> None:
    upgrade(pg_database)
    assert {"orders_prediction", "outbox", VERSION_TABLE} <= tables(pg_database)
    command.downgrade(alembic_config(pg_database), "base")
    assert tables(pg_database) & {"orders_prediction", "outbox"} == set()
    upgrade(pg_database)
    assert {"orders_prediction", "outbox"} <= tables(pg_database)


def test_pruning_deletes_only_rows_sent_before_the_retention_window(pg_database: str) -> None:
    upgrade(pg_database)
    ages = {"sent 10 days ago": 10, "sent 8 days ago": 8, "sent an hour ago": 1 / 24, "never sent": None}
    ids = {name: uuid.uuid4() for name in ages}
    with psycopg.connect(pg_database) as conn:
        for name, days in ages.items():
            conn.execute(
                "INSERT INTO outbox (event_id, source_event_id, routing_key, payload, created_at, sent_at) "
                "VALUES (%s, %s, 'ml.prediction.ready', '{}', now() - make_interval(days => 30), "
                "CASE WHEN %s::float IS NULL THEN NULL ELSE now() - make_interval(secs => %s::float * 86400) END)",
                (ids[name], uuid.uuid4(), days, days),
            )

    async def prune() -> int:
        relay = OutboxRelay(database_url=pg_database, batch_size=10)
        try:
            return await relay.prune_sent(older_than_s=7 * DAY_S)
        finally:
            await relay.close()

    assert asyncio.run(prune()) == 2
    with psycopg.connect(pg_database) as conn:
        left = {event_id for (event_id,) in conn.execute("SELECT event_id FROM outbox").fetchall()}
    assert left == {ids["sent an hour ago"], ids["never sent"]}
