"""The stack's boot-time RabbitMQ definitions declare the worker's queue exactly as the worker does: RabbitMQ refuses
a redeclaration with other arguments, so any difference would stop the worker at its first start."""

from __future__ import annotations

import json

import pytest

from tests.support import REPO_ROOT
from worker import topology

pytestmark = pytest.mark.unit


def test_the_definitions_declare_the_quorum_queue_with_the_workers_arguments() -> None:
    definitions = json.loads((REPO_ROOT / "infra/rabbitmq/definitions.json").read_text())
    queues = {q["name"]: q for q in definitions["queues"]}
    assert queues[topology.REQUESTED_QUEUE]["arguments"] == topology.REQUESTED_ARGUMENTS
    assert topology.REQUESTED_ARGUMENTS["x-queue-type"] == "quorum"
    assert topology.REQUESTED_ARGUMENTS["x-delivery-limit"] == topology.DELIVERY_LIMIT
    # the retired classic queue is not declared again: the worker drains and deletes it
    assert topology.CLASSIC_REQUESTED_QUEUE not in queues
