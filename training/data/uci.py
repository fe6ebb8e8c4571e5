"""Adapter for the UCI "Incident management process enriched event log" (dataset 498, CC BY 4.0).

The log has one row per change of an incident (~5.7 per incident). It becomes one canonical order per
incident plus its status history:
- features only from what was known at opening: the FIRST event (by `sys_updated_at`, then `sys_mod_count`)
  gives priority, category, subcategory, location, assignment group, channel (`contact_type`) and assignee;
- the label is `made_sla` at the LAST event (it can flip during an incident), as the explicit `sla_breached`;
- `created_at` = `opened_at`; `done_at` = `resolved_at` (last event), else the last Resolved/Closed event;
- there is no due date, so `due_at` stays empty. Dates are day-first (`29/2/2016 01:16`), naive, taken as UTC;
  `?` means missing;
- the status history is the sequence of `incident_state` values by `sys_updated_at`, one row per change: the log
  writes a row for every update of any field, so repeats of the same state are dropped (a row keeps its state's
  first time), and the placeholder state `-100` is no state at all. The first event with `sys_mod_count` 0 is
  the record as created: its state is the state at `opened_at` (its update time lags the opening by minutes).
  Each row carries the log's `reassignment_count` / `reopen_count` as of that row (when the log has them).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Final

import pandas as pd

from training.data.canonical import OrdersData, canonical_history, canonical_orders
from training.data.errors import DataError

PRIORITIES: Final = {"1 - Critical": "CRITICAL", "2 - High": "HIGH", "3 - Moderate": "MEDIUM", "4 - Low": "LOW"}
DATE_FORMAT: Final = "%d/%m/%Y %H:%M"
REQUIRED: Final = (
    "number",
    "incident_state",
    "made_sla",
    "opened_at",
    "sys_updated_at",
    "sys_mod_count",
    "priority",
    "category",
    "subcategory",
    "location",
    "assignment_group",
    "assigned_to",
    "contact_type",
    "resolved_at",
)
COUNTERS: Final = ("reassignment_count", "reopen_count")  # kept on the history when the log has them
DONE_STATES: Final = ("Resolved", "Closed")
PLACEHOLDER_STATES: Final = ("-100",)
MISSING_CATEGORY: Final = "unknown"  # the canonical export requires a category; 0.05% of incidents open without one


def _read(path: Path, source: str) -> pd.DataFrame:
    try:
        log = pd.read_csv(
            path, dtype=str, na_values=["?"], keep_default_na=False, usecols=lambda c: c in REQUIRED or c in COUNTERS
        )
    except FileNotFoundError as exc:
        raise DataError("file not found", source=source) from exc
    except (ValueError, zipfile.BadZipFile, pd.errors.ParserError, UnicodeDecodeError) as exc:
        # pandas names the missing columns in its ValueError ("Usecols do not match columns ...")
        raise DataError(f"not a readable UCI incident event log: {exc}", source=source) from exc
    missing = [c for c in REQUIRED if c not in log.columns]
    if missing:
        raise DataError(f"not a readable UCI incident event log: missing column(s) {', '.join(missing)}", source=source)
    return log


def _dates(log: pd.DataFrame, column: str, source: str) -> pd.Series:
    text = log[column].str.strip()
    parsed = pd.to_datetime(text, format=DATE_FORMAT, errors="coerce")
    bad = text.notna() & parsed.isna()
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise DataError(
            f"unparsable date '{text.iloc[row]}' (expected day-first D/M/YYYY HH:MM)",
            source=source,
            column=column,
            row=row + 1,
        )
    return parsed.dt.tz_localize("UTC")


def load_uci(path: Path | str, *, source: str | None = None) -> OrdersData:
    """One canonical order per incident (+ status history) from the event log at `path` (.csv or .zip)."""
    path = Path(path)
    source = source or str(path)
    log = _read(path, source)
    if log.empty:
        raise DataError("nothing left after filtering: the event log has no rows", source=source)
    for column in ("opened_at", "sys_updated_at", "resolved_at"):
        log[column] = _dates(log, column, source)
    unknown = log["priority"].notna() & ~log["priority"].isin(PRIORITIES)
    if unknown.any():
        row = int(unknown.to_numpy().nonzero()[0][0])
        raise DataError(
            f"unknown priority '{log['priority'].iloc[row]}' (expected one of {', '.join(PRIORITIES)})",
            source=source,
            column="priority",
            row=row + 1,
        )
    log["sys_mod_count"] = pd.to_numeric(log["sys_mod_count"], errors="coerce")
    log = log.sort_values(["number", "sys_updated_at", "sys_mod_count"], kind="stable")
    incidents = log.groupby("number", sort=False)
    first = incidents.nth(0).set_index("number")
    last = incidents.nth(-1).set_index("number").reindex(first.index)

    done_events = log[log["incident_state"].isin(DONE_STATES)].groupby("number")["sys_updated_at"].max()
    done_at = last["resolved_at"].fillna(done_events.reindex(first.index))
    made_sla = last["made_sla"].str.strip().str.lower()
    orders = pd.DataFrame(
        {
            "id": first.index,
            "category": first["category"].fillna(MISSING_CATEGORY).to_numpy(),
            "priority": first["priority"].map(PRIORITIES).to_numpy(),
            "created_at": first["opened_at"].to_numpy(),
            "done_at": done_at.to_numpy(),
            "assignee_id": first["assigned_to"].to_numpy(),
            "sla_breached": made_sla.map({"true": "0", "false": "1"}).to_numpy(),
            "location": first["location"].to_numpy(),
            "subcategory": first["subcategory"].to_numpy(),
            "assignment_group": first["assignment_group"].to_numpy(),
            "channel": first["contact_type"].to_numpy(),
        }
    )
    return OrdersData(
        orders=canonical_orders(orders, source=source),
        history=canonical_history(_status_changes(log), source=source),
        source=source,
    )


def _status_changes(log: pd.DataFrame) -> pd.DataFrame:
    """One row per change of state of each incident, from the log sorted by incident and update."""
    created = log["sys_mod_count"].eq(0) & ~log["number"].duplicated()
    changed_at = log["sys_updated_at"].where(~created, log["opened_at"].fillna(log["sys_updated_at"]))
    state = log["incident_state"].str.strip()
    events = pd.DataFrame(
        {
            "order_id": log["number"],
            "status": state.where(~state.isin(PLACEHOLDER_STATES)),
            "changed_at": changed_at,
        }
        | {c: log[c] for c in COUNTERS if c in log.columns}
    ).dropna(subset=["status", "changed_at"])
    repeated = events["status"].eq(events["status"].shift()) & events["order_id"].eq(events["order_id"].shift())
    return events[~repeated.to_numpy()].reset_index(drop=True)
