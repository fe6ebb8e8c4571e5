"""An order's status history read as of any instant: the latest row at or before `now` and what led up to it.

`prepare_history` sorts the rows once (by order, then `changed_at`, rows at the same instant in stored order) and
accumulates, per row, what an as-of lookup needs: how many rows came before it in its order, how many times the
order had entered a waiting status so far, and the source's reassignment / reopen counters. `latest_rows` finds
for each (order, now) the last row with `changed_at <= now` in one sort, so a lookup never sees a later row.

A row dated before its order's creation counts as made at creation (clocks of two systems disagree by minutes).
A waiting status is one whose upper-case name contains one of the dataset's markers (`WAITING_MARKERS` by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from training.data.canonical import HISTORY_COUNTER_COLUMNS

WAITING_MARKERS: Final = ("PAUS", "HOLD", "WAIT", "PEND")
NO_ROW: Final = -1


def utc_ns(series: pd.Series) -> np.ndarray:
    """int64 nanoseconds since the epoch (NaT -> the int64 minimum)."""
    values = series.astype("datetime64[ns, UTC]").dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")
    return values.view("int64")


def waiting_markers(markers: Sequence[str]) -> tuple[str, ...]:
    """Markers as compared (upper-case, stripped); at least one is needed."""
    cleaned = tuple(dict.fromkeys(m.strip().upper() for m in markers if m.strip()))
    if not cleaned:
        raise ValueError("at least one waiting-status marker is needed (e.g. PAUS,HOLD,WAIT,PEND)")
    return cleaned


def is_waiting(status: pd.Series, markers: Sequence[str]) -> np.ndarray:
    """True where the status names a wait (its name contains a marker)."""
    upper = status.astype("str").str.upper()
    found = np.zeros(len(status), dtype=bool)
    for marker in waiting_markers(markers):
        found |= upper.str.contains(marker, regex=False).fillna(False).to_numpy(dtype=bool)
    return found


@dataclass(frozen=True)
class StatusHistory:
    """History rows of known orders sorted by (order, changed_at); every array has one entry per row."""

    order: np.ndarray  # int64 position of the order in the orders frame
    at_ns: np.ndarray  # int64 changed_at, never before the order's creation
    status: np.ndarray  # object: upper-case status text
    earlier_rows: np.ndarray  # int64: rows of the same order before this one
    pauses: np.ndarray  # int64: entries into a waiting status up to and including this row
    counters: dict[str, np.ndarray]  # HISTORY_COUNTER_COLUMNS -> float64 (NaN when the source has none)

    def __len__(self) -> int:
        return len(self.order)


def _empty_history() -> StatusHistory:
    empty = np.zeros(0, dtype=np.int64)
    return StatusHistory(
        empty,
        empty,
        np.zeros(0, dtype=object),
        empty,
        empty,
        {c: np.zeros(0) for c in HISTORY_COUNTER_COLUMNS},
    )


def _sorted_rows(orders: pd.DataFrame, history: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows of known orders (mask), their sort, and the sorted order positions and (clamped) times."""
    positions = pd.Index(orders["id"]).get_indexer(history["order_id"])
    keep = positions >= 0
    order = positions[keep].astype(np.int64)
    created_ns = utc_ns(orders["created_at"])
    at_ns = np.maximum(utc_ns(history["changed_at"])[keep], created_ns[order])
    sort = np.lexsort((np.arange(len(order)), at_ns, order))
    return keep, sort, order[sort], at_ns[sort]


def change_times(orders: pd.DataFrame, history: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """Order positions and (clamped) times of the history rows, sorted as `prepare_history` sorts them."""
    if history is None or history.empty:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    _, _, order, at_ns = _sorted_rows(orders, history)
    return order, at_ns


def prepare_history(
    orders: pd.DataFrame, history: pd.DataFrame | None, *, waiting: Sequence[str] = WAITING_MARKERS
) -> StatusHistory:
    """Sort and accumulate the history of `orders` (rows of orders not in the frame are ignored)."""
    if history is None or history.empty:
        return _empty_history()
    keep, sort, order, at_ns = _sorted_rows(orders, history)
    kept = history.loc[keep]
    status = kept["status"].astype("str").str.upper().to_numpy(dtype=object)[sort]

    index = np.arange(len(order))
    first = np.ones(len(order), dtype=bool)
    first[1:] = order[1:] != order[:-1]
    start = np.maximum.accumulate(np.where(first, index, 0))
    waiting_now = is_waiting(pd.Series(status, dtype="str"), waiting)
    waiting_before = np.zeros(len(order), dtype=bool)
    waiting_before[1:] = waiting_now[:-1]
    entered = (waiting_now & (first | ~waiting_before)).astype(np.int64)
    running = np.cumsum(entered)
    pauses = running - (running[start] - entered[start])

    counters = {
        c: (
            pd.to_numeric(kept[c], errors="coerce").to_numpy(dtype=np.float64)[sort]
            if c in kept.columns
            else np.full(len(order), np.nan)
        )
        for c in HISTORY_COUNTER_COLUMNS
    }
    return StatusHistory(order, at_ns, status, index - start, pauses, counters)


def latest_rows(history: StatusHistory, order: np.ndarray, at_ns: np.ndarray) -> np.ndarray:
    """Per query (order position, instant): the index of the order's last row with changed_at <= instant, or NO_ROW.

    One sort of rows and queries together; at equal instants rows sort before queries ("at or before now").
    """
    n_rows = len(history)
    group = np.concatenate([history.order, order.astype(np.int64)])
    time = np.concatenate([history.at_ns, at_ns.astype(np.int64)])
    kind = np.concatenate([np.zeros(n_rows, np.int8), np.ones(len(order), np.int8)])
    sort = np.lexsort((kind, time, group))
    # Sorted rows keep their own (increasing) index, so a running maximum is the last row seen so far.
    last = np.maximum.accumulate(np.where(sort < n_rows, sort, NO_ROW))
    is_query = sort >= n_rows
    candidate = last[is_query]
    same_order = candidate >= 0
    same_order[same_order] = history.order[candidate[same_order]] == group[sort[is_query]][same_order]
    result = np.full(len(order), NO_ROW, dtype=np.int64)
    result[sort[is_query] - n_rows] = np.where(same_order, candidate, NO_ROW)
    return result
