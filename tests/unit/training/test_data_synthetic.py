"""The synthetic generator: deterministic, canonical, and with the structure the models are meant to learn."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osml.cli import main
from training.data.canonical import ORDER_COLUMNS, OrdersData, canonical_history, canonical_orders
from training.data.orders import load_orders
from training.data.synthetic import SLA_POLICY_HOURS, generate, write_csv
from training.features import build_training_frame
from training.labels import resolution_minutes

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def data() -> OrdersData:
    return generate(orders=6000, seed=7)


@pytest.fixture(scope="module")
def orders(data: OrdersData) -> pd.DataFrame:
    return data.orders


def test_same_seed_same_data_and_another_seed_differs() -> None:
    first, again, other = generate(orders=500, seed=3), generate(orders=500, seed=3), generate(orders=500, seed=4)
    pd.testing.assert_frame_equal(first.orders, again.orders)
    assert first.history is not None and again.history is not None
    pd.testing.assert_frame_equal(first.history, again.history)
    assert not first.orders["created_at"].equals(other.orders["created_at"])


def test_output_is_already_canonical(data: OrdersData) -> None:
    orders, history = data.orders, data.history
    assert history is not None
    assert tuple(orders.columns) == ORDER_COLUMNS
    pd.testing.assert_frame_equal(canonical_orders(orders, source="x"), orders)
    pd.testing.assert_frame_equal(canonical_history(history, source="x"), history)


def test_csv_round_trip(tmp_path: Path, data: OrdersData) -> None:
    written = write_csv(data, tmp_path / "out")
    assert [p.name for p in written] == ["orders.csv", "order_status_history.csv"]
    assert written[0].read_text().splitlines()[0] == ",".join(ORDER_COLUMNS)
    loaded = load_orders(str(tmp_path / "out"))
    pd.testing.assert_frame_equal(loaded.orders, data.orders)
    assert loaded.history is not None and data.history is not None
    pd.testing.assert_frame_equal(loaded.history, data.history)


def test_start_day_is_respected() -> None:
    orders = generate(orders=300, seed=1, start=datetime(2026, 5, 4)).orders
    assert orders["created_at"].min() >= pd.Timestamp("2026-05-04T00:00:00Z")
    assert orders["created_at"].min() < pd.Timestamp("2026-05-06T00:00:00Z")


def test_due_dates_follow_the_priority_policy(orders: pd.DataFrame) -> None:
    with_due = orders[orders["due_at"].notna()]
    hours = (with_due["due_at"] - with_due["created_at"]).dt.total_seconds() / 3600
    assert (hours == with_due["priority"].map(SLA_POLICY_HOURS)).all()
    assert 0.05 < orders["due_at"].isna().mean() < 0.12
    assert set(orders["priority"]) == set(SLA_POLICY_HOURS)


def test_lifecycle_shares(orders: pd.DataFrame) -> None:
    canceled = orders["canceled_at"].notna()
    still_open = orders["done_at"].isna() & ~canceled
    assert 0.03 <= canceled.mean() <= 0.05
    assert 0 < still_open.sum() < 0.05 * len(orders)
    assert not (orders["done_at"].notna() & canceled).any()
    assert (orders["done_at"].dropna() > orders.loc[orders["done_at"].notna(), "created_at"]).all()
    assert 0.05 < orders["assignee_id"].isna().mean() < 0.12


def test_creation_follows_working_hours_and_weekdays(orders: pd.DataFrame) -> None:
    created = orders["created_at"]
    working_hours = created.dt.hour.between(8, 17)
    assert working_hours.mean() > 0.6
    per_weekday = created.dt.dayofweek.value_counts(normalize=True)
    assert per_weekday[0] > 2 * per_weekday[5] and per_weekday[0] > 2 * per_weekday[6]


def test_durations_are_long_tailed(orders: pd.DataFrame) -> None:
    minutes = resolution_minutes(orders).dropna()
    assert minutes.min() >= 5
    assert minutes.quantile(0.99) > 15 * minutes.median()
    assert minutes.max() > 14 * 24 * 60  # some orders take weeks


def test_structure_carries_signal(data: OrdersData, orders: pd.DataFrame) -> None:
    frame = build_training_frame(data, schema_version="2")
    labeled = frame.sla.notna()
    assert 0.15 < frame.sla[labeled].mean() < 0.5

    features = frame.features
    off_hours = ~features["createdHour"].between(8, 17) | (features["createdDayOfWeek"] >= 5)
    assert frame.sla[labeled & off_hours].mean() > frame.sla[labeled & ~off_hours].mean() + 0.1

    # the same priority takes longer in some categories, with a busier assignee, on slower policies
    eta = np.log(frame.eta)
    by_category = eta.groupby(features["category"]).median()
    assert by_category["hvac"] - by_category["access"] > 1.0
    busy = features["assigneeWorkloadOpen"]
    assert eta.corr(busy, method="spearman") > 0.1
    by_priority = eta.groupby(features["priority"]).median()
    assert by_priority["LOW"] > by_priority["MEDIUM"] > by_priority["HIGH"] > by_priority["CRITICAL"]


def test_history_tells_each_order_s_story(data: OrdersData, orders: pd.DataFrame) -> None:
    history = data.history
    assert history is not None
    assert set(history["status"]) == {
        "OPEN",
        "ASSIGNED",
        "IN_PROGRESS",
        "WAITING_CUSTOMER",
        "ON_HOLD_PARTS",
        "RESOLVED",
        "REOPENED",
        "DONE",
        "CANCELED",
    }
    per_order = history.groupby("order_id", sort=False)
    assert (per_order["status"].first() == "OPEN").all()
    assert per_order["changed_at"].apply(lambda s: s.is_monotonic_increasing).all()
    for counter in ("reassignment_count", "reopen_count"):
        assert per_order[counter].apply(lambda s: s.is_monotonic_increasing).all()
    indexed = orders.set_index("id")
    first = per_order["changed_at"].first()
    assert (first == indexed.loc[first.index, "created_at"]).all()
    last = per_order.last()
    done = last[last["status"] == "DONE"]
    assert (done["changed_at"] == indexed.loc[done.index, "done_at"]).all()
    assert len(done) == indexed["done_at"].notna().sum()
    canceled = last[last["status"] == "CANCELED"]
    assert (canceled["changed_at"] == indexed.loc[canceled.index, "canceled_at"]).all()
    assert set(history["order_id"]) == set(orders["id"])
    # nothing happens to an order after it is closed
    closed = indexed["done_at"].fillna(indexed["canceled_at"]).reindex(history["order_id"]).to_numpy()
    changed = history["changed_at"].to_numpy()
    assert not (pd.notna(closed) & (changed > closed)).any()


def test_history_shares(data: OrdersData, orders: pd.DataFrame) -> None:
    history = data.history
    assert history is not None
    reached = history.groupby("status")["order_id"].nunique() / len(orders)
    assert 0.75 < reached["ASSIGNED"] < 0.95  # the assigned orders, once work had not started at creation
    assert 0.05 < reached["WAITING_CUSTOMER"] < 0.2
    assert 0.01 < reached["ON_HOLD_PARTS"] < 0.04
    assert 0.02 < reached["REOPENED"] < 0.08
    assert (reached["REOPENED"] == reached["RESOLVED"]) and history.loc[
        history["status"] == "REOPENED", "reopen_count"
    ].eq(1).all()
    reassigned = history.groupby("order_id")["reassignment_count"].max()
    assert 0.05 < reassigned.mean() < 0.2


def test_history_carries_signal_about_the_remaining_time(data: OrdersData) -> None:
    frame = build_training_frame(data, schema_version="4")
    mid_life = frame.elapsed_minutes > 0
    remaining = np.log1p(frame.eta[mid_life])
    by_status = remaining.groupby(frame.features.loc[mid_life, "status"]).median()
    # waiting for parts leaves the longest road ahead; a reopened order is almost done again
    assert by_status["ON_HOLD_PARTS"] == by_status.max()
    assert by_status["ON_HOLD_PARTS"] - by_status["IN_PROGRESS"] > 1.0
    assert by_status["RESOLVED"] < by_status["IN_PROGRESS"]


def test_generated_features_are_valid_payloads(data: OrdersData, orders: pd.DataFrame) -> None:
    from osml.schema import Features

    frame = build_training_frame(OrdersData(orders.head(300), data.history, "x"), schema_version="4")
    assert frame.features["status"].notna().all()
    whole = ("WorkloadOpen", "statusChanges", "pauses", "reassignments", "reopens")
    for record in frame.features.to_dict(orient="records"):
        clean = {k: (None if pd.isna(v) else v) for k, v in record.items()}
        clean = {k: (int(v) if k.endswith(whole) and v is not None else v) for k, v in clean.items()}
        Features.model_validate(clean)


def test_cli_writes_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--orders", "250", "--seed", "9", "--out", str(tmp_path / "gen")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["orders"] == 250 and summary["seed"] == 9
    loaded = load_orders(str(tmp_path / "gen"))
    pd.testing.assert_frame_equal(loaded.orders, generate(orders=250, seed=9).orders)


def test_cli_needs_a_destination() -> None:
    with pytest.raises(SystemExit, match="--out DIR and/or --postgres URL"):
        main(["generate", "--orders", "10"])
