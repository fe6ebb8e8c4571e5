"""The features schema: schema 4's as-of fields, and every older payload still valid (meaning "at creation")."""

from __future__ import annotations

import itertools

import pytest
from pydantic import ValidationError

from osml.schema import SCHEMAS, SEED_EXAMPLE_FEATURES, Features, feature_columns

pytestmark = pytest.mark.unit

MID_LIFE = {
    **SEED_EXAMPLE_FEATURES,
    "timeSinceCreatedMinutes": 20_000,
    "dueInMinutes": -19_280,  # overdue
    "status": "awaiting user info",
    "minutesInStatus": 95.5,
    "statusChanges": 4,
    "pauses": 1,
    "reassignments": 2,
    "reopens": 0,
}


def test_every_schema_extends_the_one_before() -> None:
    versions = sorted(SCHEMAS, key=int)
    for older, newer in itertools.pairwise(versions):
        assert set(feature_columns(older)) < set(feature_columns(newer))
    assert set(feature_columns("4")) == set(Features.model_fields)


def test_a_mid_life_payload_is_valid_and_its_status_upper_case() -> None:
    features = Features.model_validate(MID_LIFE)
    assert features.status == "AWAITING USER INFO"
    assert Features.model_validate(SEED_EXAMPLE_FEATURES).status is None  # the seed's payload: at creation


@pytest.mark.parametrize(
    ("field", "value"),
    [("minutesInStatus", -1), ("statusChanges", -1), ("pauses", 1.5), ("reopens", "many"), ("status", "")],
)
def test_out_of_range_life_fields_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        Features.model_validate({**MID_LIFE, field: value})
    assert info.value.errors()[0]["loc"] == (field,)
