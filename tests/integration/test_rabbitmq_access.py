"""infra/rabbitmq/access.sh (the users compose's broker imports at boot) on a fresh vhost of the local broker:
the backend may publish only REQUESTED, the relay only READY, and the worker may consume its queue but publish
no event."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import aio_pika
import aiormq
import pytest

from tests.services import AMQP_HOST, rabbitmqctl
from tests.support import REPO_ROOT
from worker import topology

pytestmark = pytest.mark.integration

DEFINITIONS = REPO_ROOT / "infra" / "rabbitmq" / "definitions.json"
ACCESS = REPO_ROOT / "infra" / "rabbitmq" / "access.sh"
COMPONENTS = ("worker", "relay", "backend")


@dataclass(frozen=True)
class Broker:
    vhost: str
    users: dict[str, tuple[str, str]]  # component -> (user, password)

    def url(self, component: str) -> str:
        user, password = self.users[component]
        return f"amqp://{user}:{password}@{AMQP_HOST}/{self.vhost}"


def _import(document: dict[str, object]) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as out:
        json.dump(document, out)
    try:
        os.chmod(out.name, 0o644)  # rabbitmqctl reads it as the broker's user
        rabbitmqctl("import_definitions", out.name)
    finally:
        os.unlink(out.name)


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    tag = uuid.uuid4().hex[:8]
    vhost = f"osml-access-{tag}"
    users = {c: (f"osml-{c}-{tag}", uuid.uuid4().hex) for c in (*COMPONENTS, "admin")}
    env = {
        "PATH": os.environ["PATH"],
        "RABBITMQ_VHOST": vhost,
        "RABBITMQ_USER": users["admin"][0],
        "RABBITMQ_PASSWORD": users["admin"][1],
        **{f"RABBITMQ_{c.upper()}_USER": users[c][0] for c in COMPONENTS},
        **{f"RABBITMQ_{c.upper()}_PASSWORD": users[c][1] for c in COMPONENTS},
    }
    rendered = subprocess.run(["sh", str(ACCESS)], env=env, check=True, capture_output=True, text=True).stdout
    topology_document = json.loads(DEFINITIONS.read_text().replace('"osml"', json.dumps(vhost)))
    try:
        _import(topology_document)
        _import(json.loads(rendered))
        yield Broker(vhost=vhost, users=users)
    finally:
        rabbitmqctl("delete_vhost", vhost)
        for user, _ in users.values():
            rabbitmqctl("delete_user", user)


async def publish(url: str, routing_key: str) -> None:
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(topology.EXCHANGE, ensure=False)
        await exchange.publish(aio_pika.Message(b"{}"), routing_key=routing_key, timeout=10)


async def refused(action: object) -> bool:
    try:
        await action  # type: ignore[misc]
    except (aiormq.exceptions.ChannelAccessRefused, aio_pika.exceptions.ChannelClosed) as exc:
        return "ACCESS_REFUSED" in str(exc) or "403" in str(exc)
    return False


async def test_the_backend_publishes_requests_only(broker: Broker) -> None:
    await publish(broker.url("backend"), topology.REQUESTED_KEY)
    assert await refused(publish(broker.url("backend"), topology.READY_KEY))


async def test_the_relay_publishes_ready_events_only(broker: Broker) -> None:
    await publish(broker.url("relay"), topology.READY_KEY)
    assert await refused(publish(broker.url("relay"), topology.REQUESTED_KEY))


async def test_the_relay_declares_the_topology_but_reads_no_queue(broker: Broker) -> None:
    connection = await aio_pika.connect(broker.url("relay"), timeout=10)
    async with connection:
        channel = await connection.channel()
        declared = await topology.declare(
            connection, channel
        )  # what its session declares on start, as the worker's does
        assert await refused(declared.requested.get(fail=False))


async def test_the_worker_declares_and_consumes_its_queues_and_publishes_no_event(broker: Broker) -> None:
    connection = await aio_pika.connect(broker.url("worker"), timeout=10)
    async with connection:
        channel = await connection.channel()
        await topology.declare(connection, channel)  # what the worker declares on start
        for name in (topology.REQUESTED_QUEUE, topology.DEAD_LETTER_QUEUE):
            queue = await channel.declare_queue(name, passive=True)
            await queue.get(fail=False, no_ack=False)  # a consumer's read
    assert await refused(publish(broker.url("worker"), topology.READY_KEY))
    assert await refused(publish(broker.url("worker"), topology.REQUESTED_KEY))
