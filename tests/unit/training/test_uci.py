"""UCI incident event log adapter: one order per incident, opening-time features, last-event label."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from training.data.errors import DataError
from training.data.orders import load_orders
from training.data.uci import load_uci

pytestmark = pytest.mark.unit

HEADER = (
    "number,incident_state,active,reassignment_count,reopen_count,made_sla,opened_at,sys_updated_at,sys_mod_count,"
    "contact_type,location,category,subcategory,priority,assignment_group,assigned_to,resolved_at,closed_at"
)
# INC1: opened without assignee, later assigned (reassigned once) and re-prioritised; made_sla flips to false at the
#       end; an update that leaves the state Active is no status change.
# INC2: first logged event is already Resolved; no resolved_at anywhere -> done_at from the Resolved event.
# INC3: still active (never resolved); missing category ('?'); a '-100' placeholder state.
ROWS = [
    "INC1,Active,true,0,0,true,1/3/2016 09:05,1/3/2016 10:00,1,Phone,Location 1,Category 7,Sub 2,3 - Moderate,Group 5,Tech 9,2/3/2016 18:00,7/3/2016 18:00",
    "INC1,New,true,0,0,true,1/3/2016 09:05,1/3/2016 09:10,0,Phone,Location 1,Category 7,Sub 2,3 - Moderate,Group 5,?,2/3/2016 18:00,7/3/2016 18:00",
    "INC1,Active,true,1,0,true,1/3/2016 09:05,1/3/2016 12:00,2,Phone,Location 1,Category 7,Sub 2,3 - Moderate,Group 6,Tech 9,2/3/2016 18:00,7/3/2016 18:00",
    "INC1,Resolved,true,1,0,false,1/3/2016 09:05,2/3/2016 18:00,3,Phone,Location 1,Category 7,Sub 2,1 - Critical,Group 6,Tech 9,2/3/2016 18:00,7/3/2016 18:00",
    "INC2,Resolved,true,0,0,true,13/3/2016 23:59,14/3/2016 08:00,3,Email,Location 2,Category 8,Sub 3,4 - Low,?,Tech 1,?,?",
    "INC2,Closed,false,0,0,true,13/3/2016 23:59,19/3/2016 08:00,4,Email,Location 2,Category 8,Sub 3,4 - Low,?,Tech 1,?,19/3/2016 08:00",
    "INC3,Active,true,0,0,true,20/3/2016 12:00,20/3/2016 12:30,0,Self service,?,?,?,2 - High,Group 5,?,?,?",
    "INC3,-100,true,0,0,true,20/3/2016 12:00,20/3/2016 13:00,1,Self service,?,?,?,2 - High,Group 5,?,?,?",
    "INC3,Awaiting User Info,true,0,1,true,20/3/2016 12:00,20/3/2016 14:00,2,Self service,?,?,?,2 - High,Group 5,?,?,?",
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


def test_status_history_is_the_sequence_of_state_changes(tmp_path: Path) -> None:
    history = load_uci(_write(tmp_path, ROWS)).history
    assert history is not None
    story = {
        order_id: list(zip(rows["status"], rows["changed_at"].dt.strftime("%d/%m %H:%M"), strict=True))
        for order_id, rows in history.groupby("order_id")
    }
    assert story == {
        # the record as created (mod count 0) is the state at opening: 09:05, not its 09:10 update
        "INC1": [("NEW", "01/03 09:05"), ("ACTIVE", "01/03 10:00"), ("RESOLVED", "02/03 18:00")],
        # the log starts later: the first row keeps its own time
        "INC2": [("RESOLVED", "14/03 08:00"), ("CLOSED", "19/03 08:00")],
        "INC3": [("ACTIVE", "20/03 12:00"), ("AWAITING USER INFO", "20/03 14:00")],
    }
    # a row keeps the counters of its state's first event (the reassignment at 12:00 shows from the next change)
    assert history["reassignment_count"].tolist() == [0, 0, 1, 0, 0, 0, 0]
    assert history["reopen_count"].tolist() == [0, 0, 0, 0, 0, 0, 1]


def test_history_without_counters_is_read(tmp_path: Path) -> None:
    header = HEADER.replace(",reassignment_count,reopen_count", "")
    rows = [re.sub(r"^(INC\d,[^,]+,\w+),\d+,\d+,", r"\1,", r) for r in ROWS]
    history = load_uci(_write(tmp_path, rows, header=header)).history
    assert history is not None and len(history) == 7
    assert "reassignment_count" not in history.columns


def test_load_orders_recognises_the_log_in_a_zip(tmp_path: Path) -> None:
    csv = _write(tmp_path, ROWS)
    archive = tmp_path / "incident_event_log.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(csv, "incident_event_log.csv")
    data = load_orders(str(archive))
    assert sorted(data.orders["id"]) == ["INC1", "INC2", "INC3"]
    assert data.source == str(archive)


def test_unparsable_date_names_column_and_row(tmp_path: Path) -> None:
    rows = [*ROWS[:4], ROWS[4].replace("14/3/2016 08:00", "2016-03-14T08:00")]
    with pytest.raises(DataError) as info:
        load_uci(_write(tmp_path, rows))
    assert info.value.column == "sys_updated_at" and info.value.row == 5
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
