"""Backend simulator: create orders, publish ML_PREDICTION_REQUESTED at a steady rate, collect the READY events.

It plays the backend's part of the event flow (docs/worker.md) against the real broker: orders (optionally stored in a backend-like
`orders` table), one REQUESTED event each, and its own queue bound to ML_PREDICTION_READY. The report gives how
many answers came back and the latency from publishing REQUESTED to receiving READY.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
import psycopg

from osml.schema import Priority
from worker.amqp import Delivery, json_properties, publish_confirmed, session
from worker.events import REQUESTED, utc_timestamp
from worker.migrate import psycopg_url
from worker.topology import EXCHANGE, READY_KEY, REQUESTED_KEY

CATEGORIES: Final = ("TI", "Facilities", "RH", "Financeiro", "Juridico", "Compras")
_DUE_MINUTES: Final = {"LOW": 4320, "MEDIUM": 1440, "HIGH": 720, "CRITICAL": 240}
_PUBLISH_TICK_S: Final = 0.01

_ORDERS_DDL: Final = """
CREATE TABLE IF NOT EXISTS orders (
    id uuid PRIMARY KEY, category text NOT NULL, priority text NOT NULL, created_at timestamptz NOT NULL,
    due_at timestamptz, assignee_id text
)
"""


@dataclass(frozen=True)
class SimulatedOrder:
    id: str
    category: str
    priority: str
    created_at: datetime
    due_at: datetime
    assignee_id: str | None
    workload: int

    def features(self) -> dict[str, Any]:
        return {
            "priority": self.priority,
            "category": self.category,
            "createdHour": self.created_at.hour,
            "createdDayOfWeek": self.created_at.weekday(),
            "hasAssignee": int(self.assignee_id is not None),
            "assigneeWorkloadOpen": self.workload if self.assignee_id else None,
            "dueInMinutes": (self.due_at - self.created_at).total_seconds() / 60,
        }

    def requested_event(self) -> bytes:
        return orjson.dumps(
            {
                "eventId": str(uuid.uuid4()),
                "type": REQUESTED,
                "occurredAt": utc_timestamp(datetime.now(UTC)),
                "orderId": self.id,
                "actorId": str(uuid.uuid4()),
                "data": {"features": self.features()},
            }
        )


def generate_orders(count: int, *, seed: int = 7, now: datetime | None = None) -> list[SimulatedOrder]:
    rng = random.Random(seed)
    base = now or datetime.now(UTC)
    orders = []
    for _ in range(count):
        priority = rng.choices(list(Priority), weights=(3, 5, 3, 1))[0].value
        created = base - timedelta(minutes=rng.uniform(0, 7 * 24 * 60))
        assignee = f"agent-{rng.randrange(40)}" if rng.random() < 0.7 else None
        orders.append(
            SimulatedOrder(
                id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                category=rng.choices(CATEGORIES, weights=(6, 3, 2, 2, 1, 1))[0],
                priority=priority,
                created_at=created,
                due_at=created + timedelta(minutes=_DUE_MINUTES[priority]),
                assignee_id=assignee,
                workload=rng.randrange(0, 12),
            )
        )
    return orders


async def insert_orders(database_url: str, orders: list[SimulatedOrder]) -> None:
    """Store the orders in a backend-like `orders` table (created if missing)."""
    async with await psycopg.AsyncConnection.connect(psycopg_url(database_url)) as conn, conn.cursor() as cur:
        await cur.execute(_ORDERS_DDL)
        async with cur.copy("COPY orders (id, category, priority, created_at, due_at, assignee_id) FROM STDIN") as cp:
            for o in orders:
                await cp.write_row((o.id, o.category, o.priority, o.created_at, o.due_at, o.assignee_id))


@dataclass(frozen=True)
class SimulationReport:
    published: int
    received: int
    publish_seconds: float
    total_seconds: float  # first REQUESTED published -> last READY received
    latencies_ms: list[float]
    model_versions: dict[str, int]

    @property
    def events_per_second(self) -> float:
        return self.received / self.total_seconds if self.total_seconds > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]

    def summary(self) -> str:
        return (
            f"published {self.published} REQUESTED at {self.published / max(self.publish_seconds, 1e-9):.0f}/s, "
            f"received {self.received} READY ({self.events_per_second:.0f} events/s end to end), latency ms "
            f"p50 {self.percentile_ms(50):.1f} p95 {self.percentile_ms(95):.1f} p99 {self.percentile_ms(99):.1f}, "
            f"model versions {self.model_versions}"
        )


async def simulate(*, broker_url: str, orders: list[SimulatedOrder], rate: float, timeout_s: float) -> SimulationReport:
    """Publish one REQUESTED per order at `rate` per second (0 = as fast as possible) and wait up to `timeout_s`
    after the last publish for every READY."""
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    versions: dict[str, int] = {}
    all_back = asyncio.Event()
    last_received = 0.0

    async def on_ready(message: Delivery) -> None:
        nonlocal last_received
        body = orjson.loads(message.body)
        started = sent_at.pop(body.get("orderId"), None)
        if started is None:
            return  # not ours (or a duplicate)
        last_received = time.perf_counter()
        latencies.append((last_received - started) * 1000)
        version = body["data"]["modelVersion"]
        versions[version] = versions.get(version, 0) + 1
        if len(latencies) == len(orders):
            all_back.set()

    async with session(broker_url, name="osml-simulate") as amqp:
        replies = await amqp.channel.declare_queue("", exclusive=True, auto_delete=True)
        await replies.bind(amqp.topology.exchange, routing_key=READY_KEY)
        await amqp.raw.basic_consume(replies.name, on_ready, no_ack=True)

        started = time.perf_counter()
        published = 0
        while published < len(orders):
            due = len(orders) if rate <= 0 else min(len(orders), int((time.perf_counter() - started) * rate) + 1)
            chunk = orders[published:due]
            now = time.perf_counter()
            for order in chunk:
                sent_at[order.id] = now
            await asyncio.gather(
                *(
                    publish_confirmed(
                        amqp.raw,
                        o.requested_event(),
                        exchange=EXCHANGE,
                        routing_key=REQUESTED_KEY,
                        properties=json_properties(type_=REQUESTED, message_id=uuid.uuid4().hex),
                    )
                    for o in chunk
                )
            )
            published = due
            if published < len(orders):
                await asyncio.sleep(_PUBLISH_TICK_S)
        publish_seconds = time.perf_counter() - started
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_back.wait(), timeout=timeout_s)
    return SimulationReport(
        published=published,
        received=len(latencies),
        publish_seconds=publish_seconds,
        total_seconds=(last_received - started) if latencies else 0.0,
        latencies_ms=latencies,
        model_versions=versions,
    )
