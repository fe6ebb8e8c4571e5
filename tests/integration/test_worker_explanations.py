"""`OSML_WORKER_EXPLAIN=k`: the worker asks its scorer (the facade, or its own in-process one) for k explanations
per model and stores them with each row; the READY events stay exactly as without (harness:
tests/conftest_worker.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest_worker import Pipeline, check_ready_events, requested_events
from worker.topology import DEAD_LETTER_QUEUE

pytestmark = pytest.mark.integration


def _stored_explanations(pipeline: Pipeline) -> dict[str, dict[str, Any] | None]:
    return {
        str(order_id): why for order_id, why in pipeline.query("SELECT order_id, explanations FROM orders_prediction")
    }


def _settle_and_check(pipeline: Pipeline, k: int, *, seed: int) -> None:
    """20 events through the worker already started: stored with the facade's own k explanations, READY unchanged."""
    pipeline.start_relay()
    events = requested_events(20, seed=seed)
    pipeline.broker.publish([body for _, body, _ in events])

    pipeline.wait_settled(20)
    check_ready_events(pipeline, events)  # the READY body keeps its fields, in order, and nothing more
    assert pipeline.broker.ready_count(DEAD_LETTER_QUEUE) == 0
    stored = _stored_explanations(pipeline)
    answers = pipeline.facade.predict_batch([(order_id, features) for order_id, _, features in events], explain=k)
    for (order_id, _, _), answer in zip(events, answers, strict=True):
        why = stored[order_id]
        assert why is not None
        assert [len(why[model]["contributions"]) for model in ("slaRisk", "etaMinutes")] == [k, k]
        assert why == answer["explanations"]


def test_the_facade_scorer_stores_k_explanations_per_row(pipeline: Pipeline) -> None:
    pipeline.start_worker(OSML_WORKER_EXPLAIN="3")
    _settle_and_check(pipeline, 3, seed=11)


def test_the_in_process_scorer_stores_k_explanations_per_row(pipeline: Pipeline) -> None:
    pipeline.start_worker(
        OSML_WORKER_SCORER="in-process",
        OSML_WORKER_EXPLAIN="2",
        MLFLOW_TRACKING_URI=pipeline.facade.env["MLFLOW_TRACKING_URI"],
    )
    _settle_and_check(pipeline, 2, seed=12)
