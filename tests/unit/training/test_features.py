"""Features as of an instant: hand-computed values, schema shapes, brute-force oracles and the leakage property."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from osml.schema import SUPPORTED_SCHEMA_VERSIONS, feature_columns
from training.data.canonical import OrdersData, canonical_history, canonical_orders
from training.data.synthetic import generate
from training.features import build_features, features_as_of, open_workload
from training.history import NO_ROW, StatusHistory, latest_rows, prepare_history
from training.snapshots import Instants, in_stints

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


# --- schema 4: as of an instant, from the status history ---------------------------------------------------------

LIFE_ORDERS = pd.DataFrame(
    [
        # id, created_at, due_at, done_at
        ("A", "2026-03-02T08:00:00Z", "2026-03-02T12:00:00Z", "2026-03-02T11:00:00Z"),
        ("B", "2026-03-02T08:00:00Z", None, None),
        ("C", "2026-03-02T08:00:00Z", None, None),
    ],
    columns=["id", "created_at", "due_at", "done_at"],
).assign(category="hvac", priority="HIGH", assignee_id="t1")
LIFE_HISTORY = pd.DataFrame(
    [
        # A: logged two minutes before its creation (clock skew), then a life with two pauses
        ("A", "open", "2026-03-02T07:58:00Z", 0, 0),
        ("A", "ASSIGNED", "2026-03-02T08:30:00Z", 0, 0),
        ("A", "WAITING_CUSTOMER", "2026-03-02T09:00:00Z", 0, 0),
        ("A", "PENDING_PARTS", "2026-03-02T09:30:00Z", 1, 0),  # still waiting: not a new pause
        ("A", "IN_PROGRESS", "2026-03-02T10:00:00Z", 1, 0),
        ("A", "ON_HOLD", "2026-03-02T10:15:00Z", 1, 0),
        ("A", "IN_PROGRESS", "2026-03-02T10:30:00Z", 1, 1),
        ("A", "DONE", "2026-03-02T11:00:00Z", 1, 1),
        # C: two rows at the same instant keep their stored order
        ("C", "OPEN", "2026-03-02T08:00:00Z", None, None),
        ("C", "ASSIGNED", "2026-03-02T08:00:00Z", None, None),
    ],
    columns=["order_id", "status", "changed_at", "reassignment_count", "reopen_count"],
)


@pytest.fixture
def life() -> tuple[pd.DataFrame, pd.DataFrame]:
    return canonical_orders(LIFE_ORDERS, source="life"), canonical_history(LIFE_HISTORY, source="life")


def _as_of(orders: pd.DataFrame, asks: list[tuple[str, str]]) -> Instants:
    positions = pd.Index(orders["id"]).get_indexer([order_id for order_id, _ in asks])
    at_ns = pd.to_datetime([at for _, at in asks], utc=True).as_unit("ns").asi8
    return Instants(positions.astype(np.int64), np.asarray(at_ns, dtype=np.int64))


def test_lifecycle_values_as_of_each_instant(life: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    orders, history = life
    asks = [
        ("A", "2026-03-02T08:00:00Z"),  # creation: the skewed first row counts as made at creation
        ("A", "2026-03-02T09:45:00Z"),  # 15 minutes into PENDING_PARTS
        ("A", "2026-03-02T10:15:00Z"),  # exactly at a change: the row at `now` is known
        ("A", "2026-03-02T10:45:00Z"),  # after the reopen counter moved
        ("B", "2026-03-02T09:00:00Z"),  # no history at all
        ("C", "2026-03-02T08:00:00Z"),
    ]
    features = features_as_of(orders, history, _as_of(orders, asks), schema_version="4")
    assert features["status"].tolist()[:4] == ["OPEN", "PENDING_PARTS", "ON_HOLD", "IN_PROGRESS"]
    assert pd.isna(features["status"].iloc[4]) and features["status"].iloc[5] == "ASSIGNED"
    assert features["minutesInStatus"].tolist() == pytest.approx([0.0, 15.0, 0.0, 15.0, 60.0, 0.0])
    assert features["statusChanges"].tolist() == [0, 3, 5, 6, 0, 1]
    assert features["pauses"].tolist() == [0, 1, 2, 2, 0, 0]
    assert features["reassignments"].tolist() == pytest.approx([0, 1, 1, 1, np.nan, np.nan], nan_ok=True)
    assert features["reopens"].tolist() == pytest.approx([0, 0, 0, 1, np.nan, np.nan], nan_ok=True)
    assert features["timeSinceCreatedMinutes"].tolist() == pytest.approx([0.0, 105.0, 135.0, 165.0, 60.0, 0.0])
    # due 12:00: 4 hours at creation, 75 minutes left at 10:45; B and C have no due date
    assert features["dueInMinutes"].tolist()[:4] == pytest.approx([240.0, 135.0, 105.0, 75.0])
    # the other open orders of t1: at 09:45 B and C (A itself is not its own queue)
    assert features["assigneeWorkloadOpen"].tolist() == [0, 2, 2, 2, 2, 0]


def test_waiting_markers_are_a_setting(life: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    orders, history = life
    asks = [("A", "2026-03-02T09:45:00Z"), ("A", "2026-03-02T10:45:00Z")]
    features = features_as_of(orders, history, _as_of(orders, asks), schema_version="4", waiting=("parts",))
    assert features["pauses"].tolist() == [1, 1]  # only PENDING_PARTS waits now; ON_HOLD is work


def test_schema_3_at_creation_is_unchanged_by_a_history(life: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    orders, history = life
    pd.testing.assert_frame_equal(
        build_features(orders, schema_version="3", history=history), build_features(orders, schema_version="3")
    )
    assert tuple(build_features(orders, schema_version="4", history=history)) == feature_columns("4")


def _latest_brute_force(history: StatusHistory, order: np.ndarray, at_ns: np.ndarray) -> list[int]:
    result = []
    for o, t in zip(order, at_ns, strict=True):
        candidates = np.flatnonzero((history.order == o) & (history.at_ns <= t))
        result.append(int(candidates[-1]) if len(candidates) else NO_ROW)
    return result


@pytest.mark.parametrize("seed", range(3))
def test_latest_rows_matches_brute_force(seed: int) -> None:
    data = generate(orders=120, seed=seed)
    prepared = prepare_history(data.orders, data.history)
    rng = np.random.default_rng(seed)
    order = rng.integers(0, len(data.orders), 400)
    # instants on and around the rows' own times make ties frequent
    at_ns = np.concatenate([prepared.at_ns[rng.integers(0, len(prepared), 200)], rng.choice(prepared.at_ns, 200) + 1])
    assert latest_rows(prepared, order, at_ns).tolist() == _latest_brute_force(prepared, order, at_ns)


@pytest.mark.parametrize("seed", range(3))
def test_open_workload_at_any_instant_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 200
    created = np.datetime64("2026-01-01T00:00") + rng.integers(0, 240, n).astype("timedelta64[m]")
    closed = created + rng.integers(0, 120, n).astype("timedelta64[m]")
    closed[rng.random(n) < 0.2] = np.datetime64("NaT")
    key = [None if rng.random() < 0.1 else f"k{rng.integers(0, 4)}" for _ in range(n)]
    rows = rng.integers(0, n, 300)
    at = created[rows] + rng.integers(0, 180, 300).astype("timedelta64[m]")

    got = open_workload(
        pd.Series(key, dtype="str"),
        pd.Series(created).dt.tz_localize("UTC"),
        pd.Series(closed).dt.tz_localize("UTC"),
        rows=rows,
        at_ns=at.astype("datetime64[ns]").view("int64"),
    )
    expected = [
        np.nan
        if key[i] is None
        else float(
            sum(
                1
                for j in range(n)
                if j != i and key[j] == key[i] and created[j] < t and (np.isnat(closed[j]) or closed[j] > t)
            )
        )
        for i, t in zip(rows, at, strict=True)
    ]
    np.testing.assert_array_equal(got, expected)


# --- leakage: what happened after `now` never changes the features at `now` ----------------------------------------

FeatureFunction = Callable[[pd.DataFrame, pd.DataFrame | None, Instants], pd.DataFrame]


def _known_at(data: OrdersData, cutoff: np.datetime64) -> OrdersData:
    """The export as it would have been taken at `cutoff`: later orders, rows and closings not yet there."""
    stamp = pd.Timestamp(cutoff, tz="UTC")
    orders = data.orders[data.orders["created_at"] <= stamp].copy()
    for column in ("done_at", "canceled_at"):
        orders[column] = orders[column].where(orders[column] <= stamp)
    assert data.history is not None
    history = data.history[data.history["changed_at"] <= stamp]
    return OrdersData(orders.reset_index(drop=True), history.reset_index(drop=True), data.source)


def _leaks(features: FeatureFunction, data: OrdersData, seed: int) -> bool:
    """Whether some snapshot's features change when everything dated after its `now` is appended."""
    rng = np.random.default_rng(seed)
    snapshots = in_stints(data.orders, data.history, until=data.orders["created_at"].max())
    full = features(data.orders, data.history, snapshots)
    ids = data.orders["id"].to_numpy()[snapshots.order]
    for cutoff in np.sort(rng.choice(snapshots.at_ns, size=4, replace=False)):
        known = _known_at(data, np.datetime64(int(cutoff), "ns"))
        # rows arrive in any order in an export
        known = OrdersData(known.orders.sample(frac=1.0, random_state=seed), known.history, known.source)
        asked = np.flatnonzero(snapshots.at_ns <= cutoff)
        positions = pd.Index(known.orders["id"]).get_indexer(ids[asked])
        alone = features(known.orders, known.history, Instants(positions.astype(np.int64), snapshots.at_ns[asked]))
        if not alone.equals(full.iloc[asked].reset_index(drop=True)):
            return True
    return False


def _schema_4(orders: pd.DataFrame, history: pd.DataFrame | None, instants: Instants) -> pd.DataFrame:
    return features_as_of(orders, history, instants, schema_version="4")


def _peeks_at_next_change(orders: pd.DataFrame, history: pd.DataFrame | None, instants: Instants) -> pd.DataFrame:
    """Deliberately leaky: reads the history a minute ahead of `now`."""
    ahead = Instants(instants.order, instants.at_ns + 60_000_000_000)
    features = _schema_4(orders, history, ahead)
    return features.assign(timeSinceCreatedMinutes=features["timeSinceCreatedMinutes"] - 1.0)


@pytest.fixture(scope="module")
def lives() -> OrdersData:
    return generate(orders=1200, seed=21)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_appending_later_history_or_orders_never_changes_a_snapshot(lives: OrdersData, seed: int) -> None:
    assert not _leaks(_schema_4, lives, seed)


def test_the_leakage_check_catches_a_feature_that_peeks_ahead(lives: OrdersData) -> None:
    assert _leaks(_peeks_at_next_change, lives, seed=11)
