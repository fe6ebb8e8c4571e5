"""UCI incident event log adapter: one order per incident, opening-time features, last-event label."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
import pytest

from training.data.errors import DataError
from training.data.orders import load_orders
from training.data.uci import load_uci

pytestmark = pytest.mark.unit

HEADER = (
    "number,incident_state,active,made_sla,opened_at,sys_updated_at,sys_mod_count,contact_type,location,category,"
    "subcategory,priority,assignment_group,assigned_to,resolved_at,closed_at"
)
# INC1: opened without assignee, later assigned and re-prioritised; made_sla flips to false at the end.
# INC2: first logged event is already Resolved; no resolved_at anywhere -> done_at from the Resolved event.
# INC3: still active (never resolved); missing category ('?').
ROWS = [
    "INC1,Active,true,true,1/3/2016 09:05,1/3/2016 10:00,1,Phone,Location 1,Category 7,Sub 2,3 - Moderate,Group 5,Tech 9,2/3/2016 18:00,7/3/2016 18:00",
    "INC1,New,true,true,1/3/2016 09:05,1/3/2016 09:10,0,Phone,Location 1,Category 7,Sub 2,3 - Moderate,Group 5,?,2/3/2016 18:00,7/3/2016 18:00",
    "INC1,Resolved,true,false,1/3/2016 09:05,2/3/2016 18:00,2,Phone,Location 1,Category 7,Sub 2,1 - Critical,Group 6,Tech 9,2/3/2016 18:00,7/3/2016 18:00",
    "INC2,Resolved,true,true,13/3/2016 23:59,14/3/2016 08:00,3,Email,Location 2,Category 8,Sub 3,4 - Low,?,Tech 1,?,?",
    "INC2,Closed,false,true,13/3/2016 23:59,19/3/2016 08:00,4,Email,Location 2,Category 8,Sub 3,4 - Low,?,Tech 1,?,19/3/2016 08:00",
    "INC3,Active,true,true,20/3/2016 12:00,20/3/2016 12:30,0,Self service,?,?,?,2 - High,Group 5,?,?,?",
]


def _write(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "incident_event_log.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_one_order_per_incident_with_opening_features_and_final_label(tmp_path: Path) -> None:
    data = load_uci(_write(tmp_path, ROWS))
    orders = data.orders.set_index("id")
    assert list(orders.index) == ["INC1", "INC2", "INC3"]
    inc1 = orders.loc["INC1"]
    # known at opening: the first event (by update time, not file order)
    assert inc1["priority"] == "MEDIUM" and inc1["assignment_group"] == "Group 5"
    assert pd.isna(inc1["assignee_id"])
    assert inc1["channel"] == "Phone" and inc1["subcategory"] == "Sub 2" and inc1["location"] == "Location 1"
    assert inc1["created_at"] == pd.Timestamp("2016-03-01 09:05", tz="UTC")  # day-first
    assert inc1["done_at"] == pd.Timestamp("2016-03-02 18:00", tz="UTC")
    assert inc1["sla_breached"] == 1.0  # made_sla at the LAST event
    inc2 = orders.loc["INC2"]
    assert inc2["sla_breached"] == 0.0 and inc2["priority"] == "LOW" and pd.isna(inc2["assignment_group"])
    assert inc2["done_at"] == pd.Timestamp("2016-03-19 08:00", tz="UTC")  # last Resolved/Closed event
    inc3 = orders.loc["INC3"]
    assert pd.isna(inc3["done_at"]) and inc3["category"] == "unknown" and pd.isna(inc3["location"])
    assert orders["due_at"].isna().all()


def test_status_history_keeps_every_event(tmp_path: Path) -> None:
    history = load_uci(_write(tmp_path, ROWS)).history
    assert history is not None and len(history) == len(ROWS)
    inc1 = history[history["order_id"] == "INC1"].sort_values("changed_at")
    assert list(inc1["status"]) == ["NEW", "ACTIVE", "RESOLVED"]


def test_load_orders_recognises_the_log_in_a_zip(tmp_path: Path) -> None:
    csv = _write(tmp_path, ROWS)
    archive = tmp_path / "incident_event_log.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(csv, "incident_event_log.csv")
    data = load_orders(str(archive))
    assert sorted(data.orders["id"]) == ["INC1", "INC2", "INC3"]
    assert data.source == str(archive)


def test_unparsable_date_names_column_and_row(tmp_path: Path) -> None:
    rows = [*ROWS[:3], ROWS[3].replace("14/3/2016 08:00", "2016-03-14T08:00")]
    with pytest.raises(DataError) as info:
        load_uci(_write(tmp_path, rows))
    assert info.value.column == "sys_updated_at" and info.value.row == 4
    assert "day-first" in str(info.value)


def test_unknown_priority_is_rejected(tmp_path: Path) -> None:
    rows = [ROWS[0].replace("3 - Moderate", "5 - Planning")]
    with pytest.raises(DataError, match="unknown priority '5 - Planning'"):
        load_uci(_write(tmp_path, rows))


def test_missing_column_is_a_data_error(tmp_path: Path) -> None:
    header = HEADER.replace(",assignment_group", "")
    rows = [r.replace(",Group 5", "").replace(",Group 6", "").replace(",?,Tech 1", ",Tech 1") for r in ROWS[:1]]
    with pytest.raises(DataError, match="assignment_group"):
        load_uci(_write(tmp_path, rows, header=header))
