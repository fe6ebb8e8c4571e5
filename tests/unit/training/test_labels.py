"""Labels on hand-made orders (values computed by hand) and the training frame built from them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.data.canonical import OrdersData, canonical_orders
from training.data.errors import DataError
from training.features import build_training_frame
from training.labels import resolution_minutes, sla_breached

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
