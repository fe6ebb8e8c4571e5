"""Labels on hand-made orders (values computed by hand) and the training frames (creation, snapshots) built from them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.data.canonical import OrdersData, canonical_history, canonical_orders
from training.data.errors import DataError
from training.features import TrainingFrame, build_training_frame
from training.labels import remaining_minutes, resolution_minutes, sla_breached, sla_label_rule
from training.snapshots import Instants

pytestmark = pytest.mark.unit

NAN = np.nan
ORDERS = pd.DataFrame(
    [
        # id, created_at, due_at, done_at, canceled_at, sla_breached
        ("late", "2026-03-02T09:00:00Z", "2026-03-02T13:00:00Z", "2026-03-02T13:00:01Z", None, None),
        ("on-time", "2026-03-02T08:00:00Z", "2026-03-02T12:00:00Z", "2026-03-02T11:30:00Z", None, None),
        ("at-deadline", "2026-03-02T10:00:00Z", "2026-03-02T14:00:00Z", "2026-03-02T14:00:00Z", None, None),
        ("no-due", "2026-03-02T07:00:00Z", None, "2026-03-02T07:45:00Z", None, None),
        ("open-overdue", "2026-03-02T06:00:00Z", "2026-03-02T10:00:00Z", None, None, None),
        ("open-in-time", "2026-03-02T11:00:00Z", "2026-03-03T11:00:00Z", None, None, None),
        ("canceled", "2026-03-02T05:00:00Z", "2026-03-02T09:00:00Z", None, "2026-03-02T10:00:00Z", None),
        ("explicit", "2026-03-02T04:00:00Z", "2026-03-02T08:00:00Z", "2026-03-02T07:00:00Z", None, "1"),
        ("explicit-no-due", "2026-03-02T03:00:00Z", None, "2026-03-02T03:30:00Z", None, "false"),
        ("done-before-created", "2026-03-02T12:00:00Z", None, "2026-03-02T11:00:00Z", None, None),
    ],
    columns=["id", "created_at", "due_at", "done_at", "canceled_at", "sla_breached"],
).assign(category="plumbing", priority="MEDIUM")
EXPORTED_AT = pd.Timestamp("2026-03-02T14:00:00Z")


@pytest.fixture
def orders() -> pd.DataFrame:
    return canonical_orders(ORDERS, source="hand-made").set_index("id", drop=False)


def test_sla_breached_default_rules(orders: pd.DataFrame) -> None:
    assert sla_breached(orders).to_dict() == pytest.approx(
        {
            "late": 1.0,
            "on-time": 0.0,
            "at-deadline": 0.0,  # done exactly at due_at is in time: breach means done_at > due_at
            "no-due": NAN,
            "open-overdue": NAN,  # without the export time an open order is unlabeled
            "open-in-time": NAN,
            "canceled": NAN,
            "explicit": 1.0,  # the explicit label wins over done_at <= due_at
            "explicit-no-due": 0.0,
            "done-before-created": NAN,
        },
        nan_ok=True,
    )


def test_open_orders_past_due_at_export_time_are_breached(orders: pd.DataFrame) -> None:
    labels = sla_breached(orders, as_of=EXPORTED_AT)
    assert labels["open-overdue"] == 1.0
    assert np.isnan(labels["open-in-time"])
    assert np.isnan(labels["canceled"])  # canceled is not open: its own rule applies


@pytest.mark.parametrize(("rule", "expected"), [("exclude", NAN), ("breached", 1.0), ("met", 0.0)])
def test_canceled_rule(orders: pd.DataFrame, rule: str, expected: float) -> None:
    labels = sla_breached(orders, canceled=rule)  # type: ignore[arg-type]
    assert labels["canceled"] == pytest.approx(expected, nan_ok=True)
    assert labels.drop("canceled").equals(sla_breached(orders).drop("canceled"))


def test_unknown_canceled_rule_is_refused(orders: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="canceled rule"):
        sla_breached(orders, canceled="ignore")  # type: ignore[arg-type]


def test_resolution_minutes(orders: pd.DataFrame) -> None:
    assert resolution_minutes(orders).to_dict() == pytest.approx(
        {
            "late": 240 + 1 / 60,
            "on-time": 210.0,
            "at-deadline": 240.0,
            "no-due": 45.0,
            "open-overdue": NAN,
            "open-in-time": NAN,
            "canceled": NAN,
            "explicit": 180.0,
            "explicit-no-due": 30.0,
            "done-before-created": NAN,  # inconsistent data is left unlabeled
        },
        nan_ok=True,
    )


def test_training_frame_keeps_labeled_orders_in_time_order(orders: pd.DataFrame) -> None:
    data = OrdersData(orders=orders.reset_index(drop=True), history=None, source="hand-made")
    frame = build_training_frame(data, schema_version="1")

    # export time = the latest observed instant (at-deadline's done_at, 14:00): open-overdue is breached there
    assert frame.order_id.tolist() == [
        "explicit-no-due",
        "explicit",
        "open-overdue",
        "no-due",
        "on-time",
        "late",
        "at-deadline",
    ]
    assert frame.sla.tolist() == pytest.approx([0.0, 1.0, 1.0, NAN, 0.0, 1.0, 0.0], nan_ok=True)
    assert frame.eta.tolist() == pytest.approx([30.0, 180.0, NAN, 45.0, 210.0, 240 + 1 / 60, 240.0], nan_ok=True)
    assert frame.created_at.is_monotonic_increasing
    for part in (frame.features, frame.sla, frame.eta, frame.created_at, frame.order_id):
        assert part.index.equals(pd.RangeIndex(7))
    assert frame.features["createdHour"].tolist() == [3, 4, 6, 7, 8, 9, 10]


def test_training_frame_canceled_rule_changes_what_is_kept(orders: pd.DataFrame) -> None:
    data = OrdersData(orders=orders.reset_index(drop=True), history=None, source="hand-made")
    frame = build_training_frame(data, schema_version="1", canceled="breached")
    assert frame.sla[frame.order_id == "canceled"].tolist() == [1.0]


def test_nothing_left_after_filtering_names_the_source(orders: pd.DataFrame) -> None:
    only_canceled = orders[orders["id"] == "canceled"].reset_index(drop=True)
    with pytest.raises(DataError, match=r"^exports/x\.csv: nothing left after filtering: no order has an SLA label"):
        build_training_frame(OrdersData(orders=only_canceled, history=None, source="exports/x.csv"))


def test_nothing_left_when_no_order_is_done(orders: pd.DataFrame) -> None:
    open_only = orders[orders["id"].isin(["open-overdue", "open-in-time"])].reset_index(drop=True)
    with pytest.raises(DataError, match="nothing left after filtering: no order has done_at"):
        build_training_frame(OrdersData(orders=open_only, history=None, source="x"))


def test_empty_dataset_is_refused(orders: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="nothing left after filtering: the dataset has no orders"):
        build_training_frame(OrdersData(orders=orders.iloc[:0], history=None, source="x"))


# --- labels per snapshot (schema 4) --------------------------------------------------------------------------------

HISTORY = pd.DataFrame(
    [
        ("late", "OPEN", "2026-03-02T09:00:00Z"),
        ("late", "IN_PROGRESS", "2026-03-02T10:00:00Z"),
        ("late", "ON_HOLD", "2026-03-02T12:00:00Z"),
        ("late", "DONE", "2026-03-02T13:00:01Z"),
        ("on-time", "OPEN", "2026-03-02T08:00:00Z"),
        ("on-time", "DONE", "2026-03-02T11:30:00Z"),
        ("open-overdue", "OPEN", "2026-03-02T06:00:00Z"),
        ("open-overdue", "IN_PROGRESS", "2026-03-02T11:00:00Z"),
    ],
    columns=["order_id", "status", "changed_at"],
)


@pytest.fixture
def snapshots(orders: pd.DataFrame) -> TrainingFrame:
    history = canonical_history(HISTORY, source="hand-made")
    data = OrdersData(orders=orders.reset_index(drop=True), history=history, source="hand-made")
    return build_training_frame(data, schema_version="4")


def test_each_labeled_order_has_its_creation_then_one_snapshot_per_status_stint(snapshots: TrainingFrame) -> None:
    per_order = snapshots.order_id.value_counts()
    # late: OPEN, IN_PROGRESS, ON_HOLD stints; on-time: its OPEN stint; open-overdue: OPEN, IN_PROGRESS (till export)
    assert per_order[["late", "on-time", "open-overdue"]].tolist() == [4, 2, 3]
    # without a history an order has one stint, from creation until done
    assert (per_order.drop(["late", "on-time", "open-overdue"]) == 2).all()
    late = snapshots.order_id == "late"
    stints = pd.to_datetime(
        ["2026-03-02T09:00:00Z", "2026-03-02T10:00:00Z", "2026-03-02T12:00:00Z", "2026-03-02T13:00:01Z"]
    )
    at = snapshots.as_of[late].reset_index(drop=True)
    assert at[0] == stints[0]  # the creation
    for i in range(3):  # then one instant inside each stint, seen in that stint's status
        assert stints[i] <= at[i + 1] < stints[i + 1]
    assert snapshots.features.loc[late, "status"].tolist() == ["OPEN", "OPEN", "IN_PROGRESS", "ON_HOLD"]


def test_snapshot_labels_weights_and_order(snapshots: TrainingFrame) -> None:
    done_at = pd.Series({"late": "2026-03-02T13:00:01Z", "on-time": "2026-03-02T11:30:00Z"}).map(pd.Timestamp)
    for order_id, rows in snapshots.order_id.groupby(snapshots.order_id).groups.items():
        assert snapshots.weight[rows].sum() == pytest.approx(1.0)
        assert snapshots.sla[rows].nunique(dropna=False) == 1
        if order_id in done_at:
            expected = (done_at[order_id] - snapshots.as_of[rows]).dt.total_seconds() / 60
            assert snapshots.eta[rows].tolist() == pytest.approx(expected.tolist())
    assert (snapshots.eta.dropna() > 0).all()
    elapsed = (snapshots.as_of - snapshots.created_at).dt.total_seconds() / 60
    assert snapshots.elapsed_minutes.tolist() == pytest.approx(elapsed.tolist())
    assert snapshots.features["timeSinceCreatedMinutes"].tolist() == pytest.approx(elapsed.tolist())
    # creation order, each order's snapshots together and in time order
    assert snapshots.created_at.is_monotonic_increasing
    assert (snapshots.order_id != snapshots.order_id.shift()).sum() == snapshots.order_id.nunique()
    assert snapshots.creation_rows().tolist() == np.flatnonzero(~snapshots.order_id.duplicated()).tolist()
    rows = snapshots.orders_of(np.flatnonzero(snapshots.order_id == "late")[-1:])
    assert snapshots.order_id.iloc[rows].eq("late").all() and len(rows) == 4


def test_schema_3_frame_is_the_creation_snapshots(orders: pd.DataFrame) -> None:
    data = OrdersData(orders=orders.reset_index(drop=True), history=None, source="hand-made")
    frame = build_training_frame(data, schema_version="3")
    assert (frame.weight == 1).all() and (frame.elapsed_minutes == 0).all()
    assert frame.as_of.equals(frame.created_at) and len(frame.creation_rows()) == len(frame.order_id)


def test_breach_already_known_by_the_instant(snapshots: TrainingFrame) -> None:
    # open-overdue was due at 10:00; its snapshot inside the IN_PROGRESS stint (from 11:00) is past it
    known = snapshots.breached_by_now[snapshots.order_id == "open-overdue"].tolist()
    assert known[0] is False and known[-1] is True
    # an explicit label is not the due-date rule, whatever its due date says
    assert not snapshots.breached_by_now[snapshots.order_id == "explicit"].any()


def test_sla_label_rule(orders: pd.DataFrame) -> None:
    assert sla_label_rule(orders) == "mixed"
    assert sla_label_rule(orders.drop(columns="sla_breached")) == "due_at"
    assert sla_label_rule(orders[orders["id"].isin(["explicit", "explicit-no-due"])]) == "explicit"


def test_remaining_minutes_from_any_instant(orders: pd.DataFrame) -> None:
    flat = orders.reset_index(drop=True)
    position = int(np.flatnonzero(flat["id"] == "on-time")[0])
    at = pd.to_datetime(["2026-03-02T08:00:00Z", "2026-03-02T11:00:00Z", "2026-03-02T12:00:00Z"]).as_unit("ns").asi8
    instants = Instants(np.full(3, position, dtype=np.int64), np.asarray(at, dtype=np.int64))
    assert remaining_minutes(flat, instants).tolist() == pytest.approx([210.0, 30.0, np.nan], nan_ok=True)
