"""Features as of creation: hand-computed values, schema shapes, a brute-force oracle and the leakage property."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osml.schema import SUPPORTED_SCHEMA_VERSIONS, feature_columns
from training.data.canonical import canonical_orders
from training.data.synthetic import generate
from training.features import build_features, open_workload

pytestmark = pytest.mark.unit

# 2026-03-02 is a Monday. Times are chosen so that every boundary rule is exercised:
#   A closes exactly when C is created (no longer open); G is created at the same instant as B (neither counts
#   the other); C is canceled before D is created; H is given with a +02:00 offset (Sunday 01:30 local time is
#   Saturday 23:30 UTC); E has no assignee.
HAND_MADE = pd.DataFrame(
    [
        # id, assignee, created_at, due_at, done_at, canceled_at, assignment_group
        ("A", "t1", "2026-03-02T08:00:00Z", None, "2026-03-02T10:00:00Z", None, "g1"),
        ("B", "t1", "2026-03-02T09:00:00Z", "2026-03-02T13:00:00Z", "2026-03-02T12:00:00Z", None, "g1"),
        ("G", "t1", "2026-03-02T09:00:00Z", None, None, None, "g1"),
        ("C", "t1", "2026-03-02T10:00:00Z", None, None, "2026-03-02T11:00:00Z", "g1"),
        ("D", "t1", "2026-03-02T11:30:00", "2026-03-01T11:30:00", None, None, "g1"),
        ("E", None, "2026-03-02T09:30:00Z", None, None, None, "g1"),
        ("F", "t2", "2026-03-02T09:00:00Z", None, None, None, None),
        ("H", "t2", "2026-03-08T01:30:00+02:00", None, None, None, None),
    ],
    columns=["id", "assignee_id", "created_at", "due_at", "done_at", "canceled_at", "assignment_group"],
).assign(category="hvac", priority="high")


@pytest.fixture
def hand_made() -> pd.DataFrame:
    return canonical_orders(HAND_MADE, source="hand-made")


def test_hand_made_values(hand_made: pd.DataFrame) -> None:
    features = build_features(hand_made, schema_version="3").set_axis(hand_made["id"])

    assert features["assigneeWorkloadOpen"].to_dict() == pytest.approx(
        {"A": 0, "B": 1, "G": 1, "C": 2, "D": 2, "E": np.nan, "F": 0, "H": 1}, nan_ok=True
    )
    assert features["hasAssignee"].to_dict() == {"A": 1, "B": 1, "G": 1, "C": 1, "D": 1, "E": 0, "F": 1, "H": 1}
    # group g1 at E (09:30): A, B, G open (C, D later) -> 3; at D (11:30): B, G, E open (A done, C canceled) -> 3
    assert features["assignmentGroupWorkloadOpen"].to_dict() == pytest.approx(
        {"A": 0, "B": 1, "G": 1, "C": 3, "D": 3, "E": 3, "F": np.nan, "H": np.nan}, nan_ok=True
    )
    assert features["createdHour"].to_dict() == {"A": 8, "B": 9, "G": 9, "C": 10, "D": 11, "E": 9, "F": 9, "H": 23}
    assert features["createdDayOfWeek"].to_dict() == {"A": 0, "B": 0, "G": 0, "C": 0, "D": 0, "E": 0, "F": 0, "H": 5}
    # B is due 4 hours after creation; D's due date already passed a day before it was created
    assert features["dueInMinutes"].to_dict() == pytest.approx(
        {"A": np.nan, "B": 240.0, "G": np.nan, "C": np.nan, "D": -1440.0, "E": np.nan, "F": np.nan, "H": np.nan},
        nan_ok=True,
    )
    assert (features["timeSinceCreatedMinutes"] == 0).all()
    assert set(features["priority"]) == {"HIGH"}
    assert features["assignmentGroup"].isna().tolist() == [False] * 6 + [True] * 2


@pytest.mark.parametrize("version", sorted(SUPPORTED_SCHEMA_VERSIONS))
def test_columns_are_exactly_the_schema(hand_made: pd.DataFrame, version: str) -> None:
    features = build_features(hand_made, schema_version=version)
    assert tuple(features.columns) == feature_columns(version)
    assert features.index.equals(hand_made.index)


def test_unknown_schema_version_is_refused(hand_made: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="schema version '99'"):
        build_features(hand_made, schema_version="99")


def test_missing_optional_columns_give_empty_features() -> None:
    minimal = pd.DataFrame(
        {
            "id": ["1", "2"],
            "category": ["a", "b"],
            "priority": ["LOW", "HIGH"],
            "created_at": pd.to_datetime(["2026-01-01T10:00:00Z", "2026-01-01T11:00:00Z"], utc=True),
        }
    )
    features = build_features(minimal, schema_version="3")
    assert features["hasAssignee"].tolist() == [0, 0]
    assert features[["assigneeWorkloadOpen", "dueInMinutes", "assignmentGroupWorkloadOpen"]].isna().all().all()
    assert features["location"].isna().all()


def _brute_force(key: list[str | None], created: np.ndarray, closed: np.ndarray) -> list[float]:
    result = []
    for i, k in enumerate(key):
        if k is None:
            result.append(np.nan)
            continue
        count = sum(
            1
            for j, other in enumerate(key)
            if j != i and other == k and created[j] < created[i] and (np.isnat(closed[j]) or closed[j] > created[i])
        )
        result.append(float(count))
    return result


@pytest.mark.parametrize("seed", range(5))
def test_open_workload_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    # Minute resolution over a few hours makes ties between creations and closings frequent.
    created = np.datetime64("2026-01-01T00:00") + rng.integers(0, 240, n).astype("timedelta64[m]")
    closed = created + rng.integers(0, 120, n).astype("timedelta64[m]")
    closed[rng.random(n) < 0.2] = np.datetime64("NaT")
    key = [None if rng.random() < 0.1 else f"k{rng.integers(0, 4)}" for _ in range(n)]

    got = open_workload(
        pd.Series(key, dtype="str"),
        pd.Series(created).dt.tz_localize("UTC"),
        pd.Series(closed).dt.tz_localize("UTC"),
    )
    np.testing.assert_array_equal(got, _brute_force(key, created, closed))


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_adding_later_orders_never_changes_earlier_features(seed: int) -> None:
    orders = generate(orders=1500, seed=seed).orders
    full = build_features(orders, schema_version="3").set_axis(orders["id"])
    rng = np.random.default_rng(seed)
    created = orders["created_at"]
    for cutoff in rng.choice(created.to_numpy(), size=4, replace=False):
        earlier = orders[created <= cutoff].sample(frac=1.0, random_state=seed)  # row order must not matter
        assert 0 < len(earlier) < len(orders)
        alone = build_features(earlier, schema_version="3").set_axis(earlier["id"])
        pd.testing.assert_frame_equal(alone, full.loc[alone.index])
