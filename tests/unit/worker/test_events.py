from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from worker.events import InvalidEvent, parse_requested, ready_event_id, ready_for, utc_timestamp

pytestmark = pytest.mark.unit

# the REQUESTED example of docs/worker.md with real ids in place of the placeholder "uuid"
EVENT_ID = "0b9f3c2e-5d6a-4f7b-8c9d-0e1f2a3b4c5d"
ORDER_ID = "7D5E3A10-1B2C-4D3E-8F40-5A6B7C8D9E0F"
REQUESTED_BODY = {
    "eventId": EVENT_ID,
    "type": "ML_PREDICTION_REQUESTED",
    "occurredAt": "2026-05-10T12:00:00Z",
    "orderId": ORDER_ID,
    "actorId": "3c0e8f2a-9b1d-4e6f-a7c8-d9e0f1a2b3c4",
    "data": {
        "features": {
            "priority": "HIGH",
            "category": "TI",
            "createdHour": 14,
            "createdDayOfWeek": 2,
            "hasAssignee": 1,
            "dueInMinutes": 720,
        }
    },
}


def test_parses_the_seed_requested_event() -> None:
    event = parse_requested(orjson.dumps(REQUESTED_BODY))
    assert event.eventId == EVENT_ID
    assert event.orderId == ORDER_ID  # kept as sent, case included
    assert event.occurredAt == datetime(2026, 5, 10, 12, tzinfo=UTC)
    assert event.data.features == REQUESTED_BODY["data"]["features"]


def test_unknown_top_level_fields_are_ignored() -> None:
    event = parse_requested(orjson.dumps({**REQUESTED_BODY, "traceId": "abc"}))
    assert event.eventId == EVENT_ID


@pytest.mark.parametrize(
    ("body", "reason", "needle"),
    [
        (b"{not json", "invalid_json", ""),
        (b"[1, 2]", "invalid_event", "JSON object"),
        (orjson.dumps({**REQUESTED_BODY, "type": "ORDER_CREATED"}), "wrong_type", "ORDER_CREATED"),
        (orjson.dumps({k: v for k, v in REQUESTED_BODY.items() if k != "type"}), "wrong_type", "None"),
        (orjson.dumps({**REQUESTED_BODY, "orderId": "order-42"}), "invalid_event", "orderId"),
        (orjson.dumps({**REQUESTED_BODY, "eventId": None}), "invalid_event", "eventId"),
        (orjson.dumps({**REQUESTED_BODY, "occurredAt": "2026-05-10T12:00:00"}), "invalid_event", "occurredAt"),
        (orjson.dumps({**REQUESTED_BODY, "data": {"features": [1]}}), "invalid_event", "data.features"),
        (orjson.dumps({**REQUESTED_BODY, "data": {}}), "invalid_event", "data.features"),
    ],
)
def test_invalid_bodies_name_their_reason(body: bytes, reason: str, needle: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_requested(body)
    assert caught.value.reason == reason
    assert needle in caught.value.detail


def test_ready_event_serialises_exactly_as_the_seed() -> None:
    event = parse_requested(orjson.dumps(REQUESTED_BODY))
    ready = ready_for(
        event,
        model_version="2026-05-01_001",
        sla_risk=0.78,
        eta_minutes=240,
        at=datetime(2026, 5, 10, 12, 0, 5, 123456, tzinfo=UTC),
    )
    expected = (
        '{"eventId":"' + ready.eventId + '","type":"ML_PREDICTION_READY","occurredAt":"2026-05-10T12:00:05Z",'
        '"orderId":"' + ORDER_ID + '","actorId":"system",'
        '"data":{"modelVersion":"2026-05-01_001","slaRisk":0.78,"etaMinutes":240}}'
    )
    assert ready.to_json().decode() == expected
    assert uuid.UUID(ready.eventId).version == 5


def test_ready_event_id_is_stable_per_request_and_distinct_across_requests() -> None:
    other = str(uuid.uuid4())
    assert ready_event_id(EVENT_ID) == ready_event_id(EVENT_ID.upper())
    assert ready_event_id(EVENT_ID) != ready_event_id(other)
    assert ready_event_id(EVENT_ID) != EVENT_ID


def test_timestamps_are_utc_with_z() -> None:
    from datetime import timedelta, timezone

    moment = datetime(2026, 5, 10, 9, 0, 5, tzinfo=timezone(timedelta(hours=-3)))
    assert utc_timestamp(moment) == "2026-05-10T12:00:05Z"
