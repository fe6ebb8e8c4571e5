"""Prediction instants: creation, status changes, inside status stints, one instant; caps and determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.data.canonical import OrdersData, canonical_history, canonical_orders
from training.data.synthetic import generate
from training.snapshots import Instants, at_changes, at_creation, at_instant, in_stints

pytestmark = pytest.mark.unit

ORDERS = pd.DataFrame(
    [
        # id, created_at, done_at, canceled_at
        ("busy", "2026-03-02T08:00:00Z", "2026-03-02T20:00:00Z", None),
        ("canceled", "2026-03-02T09:00:00Z", None, "2026-03-02T10:00:00Z"),
        ("open", "2026-03-02T11:00:00Z", None, None),
    ],
    columns=["id", "created_at", "done_at", "canceled_at"],
).assign(category="hvac", priority="LOW")
HISTORY = pd.DataFrame(
    [("busy", "OPEN", "2026-03-02T08:00:00Z")]
    + [("busy", f"STEP_{h}", f"2026-03-02T{h:02d}:00:00Z") for h in range(9, 21)]  # 12 changes, the last at done
    + [("busy", "STEP_9_AGAIN", "2026-03-02T09:00:00Z")]  # same instant as a change: one prediction point
    + [("canceled", "OPEN", "2026-03-02T09:00:00Z"), ("canceled", "WAITING", "2026-03-02T11:00:00Z")]
    + [("open", "OPEN", "2026-03-02T11:00:00Z"), ("open", "IN_PROGRESS", "2026-03-02T12:00:00Z")],
    columns=["order_id", "status", "changed_at"],
)


@pytest.fixture
def data() -> OrdersData:
    return OrdersData(canonical_orders(ORDERS, source="x"), canonical_history(HISTORY, source="x"), "x")


def _table(data: OrdersData, instants: Instants) -> list[tuple[str, str]]:
    ids = data.orders["id"].to_numpy()[instants.order]
    return list(zip(ids, instants.as_of().dt.strftime("%H:%M:%S"), strict=True))


def test_creation_and_changes_while_open(data: OrdersData) -> None:
    got = _table(data, at_changes(data.orders, data.history))
    busy = [("busy", f"{h:02d}:00:00") for h in range(8, 20)]  # creation, then 09..19 (20:00 is the closing)
    assert got == [*busy, ("canceled", "09:00:00"), ("open", "11:00:00"), ("open", "12:00:00")]
    assert _table(data, at_creation(data.orders)) == [
        ("busy", "08:00:00"),
        ("canceled", "09:00:00"),
        ("open", "11:00:00"),
    ]


def test_cap_keeps_the_creation_and_spreads_the_rest(data: OrdersData) -> None:
    got = _table(data, at_changes(data.orders, data.history, rows=np.array([0]), cap=4))
    # 11 changes, 3 kept: ranks 0, 3, 7 of them
    assert got == [("busy", "08:00:00"), ("busy", "09:00:00"), ("busy", "12:00:00"), ("busy", "16:00:00")]
    assert len(at_changes(data.orders, data.history, cap=1)) == 3
    with pytest.raises(ValueError, match="at least 1"):
        at_changes(data.orders, data.history, cap=0)


def test_one_instant_inside_each_stint(data: OrdersData) -> None:
    until = pd.Timestamp("2026-03-02T13:00:00Z")
    instants = in_stints(data.orders, data.history, until=until, rows=np.array([1, 2]))
    got = instants.as_of().tolist()
    ids = data.orders["id"].to_numpy()[instants.order].tolist()
    assert ids == ["canceled", "canceled", "open", "open", "open"]
    stamp = pd.Timestamp
    assert got[0] == stamp("2026-03-02T09:00:00Z") and stamp("2026-03-02T09:00:00Z") < got[1] < stamp(
        "2026-03-02T10:00Z"
    )
    assert got[2] == stamp("2026-03-02T11:00:00Z") and got[2] < got[3] < stamp("2026-03-02T12:00:00Z")
    assert stamp("2026-03-02T12:00:00Z") <= got[4] < until  # still open: its last stint runs until the export


def test_stint_instants_do_not_depend_on_row_order() -> None:
    data = generate(orders=400, seed=5)
    until = data.orders["created_at"].max()
    first = in_stints(data.orders, data.history, until=until, cap=5)
    shuffled = data.orders.sample(frac=1.0, random_state=1).reset_index(drop=True)
    assert data.history is not None
    again = in_stints(shuffled, data.history.sample(frac=1.0, random_state=2), until=until, cap=5)
    key = sorted(zip(data.orders["id"].to_numpy()[first.order], first.at_ns, strict=True))
    assert key == sorted(zip(shuffled["id"].to_numpy()[again.order], again.at_ns, strict=True))
    assert np.bincount(first.order).max() <= 5


def test_orders_open_at_an_instant(data: OrdersData) -> None:
    assert _table(data, at_instant(data.orders, pd.Timestamp("2026-03-02T09:30:00Z"))) == [
        ("busy", "09:30:00"),
        ("canceled", "09:30:00"),
    ]
    # closed exactly then is no longer open; created exactly then is; naive means UTC
    assert _table(data, at_instant(data.orders, pd.Timestamp("2026-03-02T10:00:00Z"))) == [("busy", "10:00:00")]
    assert _table(data, at_instant(data.orders, pd.Timestamp("2026-03-02T11:00:00"))) == [
        ("busy", "11:00:00"),
        ("open", "11:00:00"),
    ]
