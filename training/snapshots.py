"""Prediction instants ("snapshots"): which (order, now) pairs features are computed for.

- `at_creation`: every order at its `created_at` (what schemas 1-3 know);
- `at_changes`: every order at creation and at each status change while it is open (after creation, strictly
  before it was done or canceled), at most `cap` instants per order, spread evenly over its changes;
- `in_stints`: every order at creation and at one instant inside each stint in a status (what training uses:
  predictions happen between changes too, and `minutesInStatus` is 0 at every change);
- `at_instant`: the orders open at one instant (created at or before it, not closed by then).

An order is closed at the first of `done_at` / `canceled_at`; an order never closed is open until the export ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.history import change_times, utc_ns

_NAT = np.iinfo(np.int64).min


@dataclass(frozen=True)
class Instants:
    """Positions of orders in the orders frame and the prediction instant of each (int64 ns, UTC), row-aligned."""

    order: np.ndarray
    at_ns: np.ndarray

    def __len__(self) -> int:
        return len(self.order)

    def as_of(self) -> pd.Series:
        return pd.Series(pd.to_datetime(self.at_ns, unit="ns", utc=True))

    def take(self, rows: np.ndarray) -> Instants:
        return Instants(self.order[rows], self.at_ns[rows])


def closed_at(orders: pd.DataFrame) -> pd.Series:
    """When each order stopped being open: the first of done_at / canceled_at (NaT while open)."""
    done = _timestamps(orders, "done_at")
    canceled = _timestamps(orders, "canceled_at")
    return done.where(done.notna() & ~(canceled < done), canceled)


def _timestamps(orders: pd.DataFrame, column: str) -> pd.Series:
    if column in orders.columns:
        return orders[column].astype("datetime64[ns, UTC]")
    return pd.Series(pd.NaT, index=orders.index, dtype="datetime64[ns, UTC]")


def at_creation(orders: pd.DataFrame, rows: np.ndarray | None = None) -> Instants:
    """Orders (all, or those at positions `rows`) at their creation."""
    order = np.arange(len(orders), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    return Instants(order, utc_ns(orders["created_at"])[order])


def _evenly_spread(rank: np.ndarray, total: np.ndarray, keep: int) -> np.ndarray:
    """For item `rank` of `total` (per group): is it one of `keep` items spread evenly, first one included?"""
    if keep <= 0:
        return np.zeros(len(rank), dtype=bool)
    many = total > keep
    # picked ranks are floor(j * total / keep) for j < keep; rank r is picked when j = ceil(r * keep / total) hits it
    j = -((-rank * keep) // np.maximum(total, 1))
    picked = (j < keep) & ((j * total) // keep == rank)
    return ~many | picked


def _stints(orders: pd.DataFrame, history: pd.DataFrame | None, rows: np.ndarray) -> Instants:
    """When each stint in one status began, per order at positions `rows`: creation, then each change while open.

    Rows at the same instant are one change as far as a prediction can tell. Sorted by (order, instant).
    """
    order, at_ns = change_times(orders, history)
    wanted = np.zeros(len(orders), dtype=bool)
    wanted[rows] = True
    closed_ns = utc_ns(closed_at(orders))
    created_ns = utc_ns(orders["created_at"])
    still_open = (closed_ns[order] == _NAT) | (at_ns < closed_ns[order])
    change = wanted[order] & (at_ns > created_ns[order]) & still_open
    all_order = np.concatenate([rows, order[change]])
    all_at = np.concatenate([created_ns[rows], at_ns[change]])
    sort = np.lexsort((all_at, all_order))
    all_order, all_at = all_order[sort], all_at[sort]
    distinct = np.ones(len(all_order), dtype=bool)
    distinct[1:] = (all_order[1:] != all_order[:-1]) | (all_at[1:] != all_at[:-1])
    return Instants(all_order[distinct], all_at[distinct])


def rank_in_order(order: np.ndarray) -> np.ndarray:
    """Each row's position in its run of equal `order` values (rows of one order must be contiguous)."""
    first = np.ones(len(order), dtype=bool)
    first[1:] = order[1:] != order[:-1]
    index = np.arange(len(order))
    return index - np.maximum.accumulate(np.where(first, index, 0))


def _capped(instants: Instants, cap: int | None, n_orders: int) -> Instants:
    """Each order's first instant (its creation) plus at most `cap - 1` of the others, spread evenly."""
    if cap is None:
        return instants
    if cap < 1:
        raise ValueError(f"the snapshot cap must be at least 1, got {cap}")
    rank = rank_in_order(instants.order)
    later = rank > 0
    total = np.bincount(instants.order, minlength=n_orders)[instants.order] - 1
    keep = ~later | _evenly_spread(rank - 1, total, cap - 1)
    return instants.take(np.flatnonzero(keep))


def at_changes(
    orders: pd.DataFrame, history: pd.DataFrame | None, *, rows: np.ndarray | None = None, cap: int | None = None
) -> Instants:
    """Creation plus each status change while open, per order (all, or those at positions `rows`), in time order."""
    order = np.arange(len(orders), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    return _capped(_stints(orders, history, order), cap, len(orders))


def _unit_interval(ids: np.ndarray, rank: np.ndarray, salt: int = 0) -> np.ndarray:
    """A fixed pseudo-random number in [0, 1) per (order id, rank, salt): reproducible whatever the row order;
    another salt gives an independent draw for the same (order, rank)."""
    hashed = pd.util.hash_array(ids.astype(str).astype(object)) ^ (
        (rank.astype(np.uint64) + np.uint64(salt) * np.uint64(1 << 32)) * np.uint64(0x9E3779B97F4A7C15)
    )
    mixed = pd.util.hash_array(hashed)
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def fitted_sample(ids: np.ndarray, order: np.ndarray, rank: np.ndarray, later: int) -> np.ndarray:
    """Which snapshots a model fits on: every order's creation (rank 0) and `later` of its other snapshots,
    drawn at random (a fixed draw per order id and rank, so a partition of the export draws alike).

    `order` groups rows by order (equal values are one order), `rank` is a row's position among its order's
    snapshots in time order.
    """
    if later < 0:
        raise ValueError(f"the fitted later snapshots must be at least 0, got {later}")
    draw = _unit_interval(ids, rank, salt=1)
    draw[rank == 0] = -1.0  # the creation sorts first, and is always kept
    sort = np.lexsort((draw, order))
    kept = np.empty(len(order), dtype=bool)
    kept[sort] = rank_in_order(order[sort]) <= later
    return kept


def in_stints(
    orders: pd.DataFrame,
    history: pd.DataFrame | None,
    *,
    until: pd.Timestamp,
    rows: np.ndarray | None = None,
    cap: int | None = None,
) -> Instants:
    """Creation plus one instant inside each stint in a status while open, per order, in time order.

    A stint ends at the next change, when the order is closed, or at `until` (the export time) for an order
    still open. The instant is a fixed pseudo-random share of the stint, so its `minutesInStatus` ranges over
    what a prediction at any moment sees (at the change itself it would always be 0).
    """
    order = np.arange(len(orders), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    stints = _stints(orders, history, order)
    last = np.ones(len(stints), dtype=bool)
    last[:-1] = stints.order[1:] != stints.order[:-1]
    closed_ns = utc_ns(closed_at(orders))[stints.order]
    end_ns = np.where(closed_ns == _NAT, _utc_value(until), closed_ns)
    end_ns[~last] = stints.at_ns[1:][~last[:-1]]
    rank = rank_in_order(stints.order)
    share = _unit_interval(orders["id"].to_numpy(dtype=object)[stints.order], rank)
    length = np.maximum(end_ns - stints.at_ns, 0)
    inside = Instants(stints.order, stints.at_ns + (share * length).astype(np.int64))
    creation = at_creation(orders, order)
    both = Instants(np.concatenate([creation.order, inside.order]), np.concatenate([creation.at_ns, inside.at_ns]))
    kind = np.concatenate([np.zeros(len(creation), np.int8), np.ones(len(inside), np.int8)])
    sort = np.lexsort((kind, both.at_ns, both.order))
    both = both.take(sort)
    distinct = np.ones(len(both), dtype=bool)
    distinct[1:] = (both.order[1:] != both.order[:-1]) | (both.at_ns[1:] != both.at_ns[:-1])
    return _capped(both.take(np.flatnonzero(distinct)), cap, len(orders))


def _utc_value(stamp: pd.Timestamp) -> int:
    value = pd.Timestamp(stamp)
    return int((value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")).value)


def at_instant(orders: pd.DataFrame, now: pd.Timestamp) -> Instants:
    """The orders open at `now` (created at or before it, closed after it or never), each at `now`."""
    now_ns = _utc_value(now)
    closed_ns = utc_ns(closed_at(orders))
    open_then = (utc_ns(orders["created_at"]) <= now_ns) & ((closed_ns == _NAT) | (closed_ns > now_ns))
    order = np.flatnonzero(open_then).astype(np.int64)
    return Instants(order, np.full(len(order), now_ns, dtype=np.int64))
