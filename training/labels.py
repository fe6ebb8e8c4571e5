"""Labels (docs/model-card.md): `slaBreached` for the SLA-risk classifier and `resolutionMinutes` for the ETA regressor.

- An explicit `sla_breached` value wins where present (sources that know the outcome but have no `due_at`).
- Otherwise a finished order is breached when `done_at > due_at`; no `due_at` means unlabeled.
- An order still open is unlabeled, unless `as_of` (the export time) is given and its `due_at` already passed
  then: it has breached whatever happens next. Dropping those would hide exactly the slowest orders.
- A canceled order (`canceled_at` set, never done) follows the `canceled` rule, even over an explicit label:
  excluded (default), breached or met.
- `resolutionMinutes = done_at - created_at`; NaN when not done or when done before created (inconsistent data).
- For a snapshot at instant `now`, the ETA label is the remaining time `done_at - now` (the resolution time at
  creation) and the SLA label is the order's.
- `sla_label_rule` says where the labels came from: `due_at` (every label is the due-date rule: an open order
  past its due date has certainly breached, so serving may answer 1.0 for it), `explicit`, or `mixed`.
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np
import pandas as pd

from training.history import utc_ns
from training.snapshots import Instants, at_creation

CanceledRule = Literal["exclude", "breached", "met"]
SlaLabelRule = Literal["due_at", "explicit", "mixed"]
CANCELED_RULES: Final[tuple[CanceledRule, ...]] = ("exclude", "breached", "met")
_CANCELED_VALUE: Final[dict[str, float]] = {"exclude": np.nan, "breached": 1.0, "met": 0.0}


def _timestamps(orders: pd.DataFrame, column: str) -> pd.Series:
    if column in orders.columns:
        return orders[column]
    return pd.Series(pd.NaT, index=orders.index, dtype="datetime64[ns, UTC]")


def is_canceled(orders: pd.DataFrame) -> pd.Series:
    """Canceled and never done."""
    return _timestamps(orders, "canceled_at").notna() & _timestamps(orders, "done_at").isna()


def sla_breached(
    orders: pd.DataFrame, *, canceled: CanceledRule = "exclude", as_of: pd.Timestamp | None = None
) -> pd.Series:
    """Float 0/1 per order; NaN = unlabeled or excluded."""
    if canceled not in _CANCELED_VALUE:
        raise ValueError(f"canceled rule must be one of {', '.join(CANCELED_RULES)}, got {canceled!r}")
    done = _timestamps(orders, "done_at")
    due = _timestamps(orders, "due_at")
    label = pd.Series(np.nan, index=orders.index, dtype="float64")
    finished = done.notna() & due.notna()
    label[finished] = (done[finished] > due[finished]).astype("float64")
    if as_of is not None:
        overdue_open = done.isna() & _timestamps(orders, "canceled_at").isna() & due.notna() & (due < as_of)
        label[overdue_open] = 1.0
    if "sla_breached" in orders.columns:
        explicit = orders["sla_breached"].astype("float64")
        label = explicit.where(explicit.notna(), label)
    label[is_canceled(orders)] = _CANCELED_VALUE[canceled]
    return label


def _explicit(orders: pd.DataFrame) -> pd.Series:
    if "sla_breached" in orders.columns:
        return orders["sla_breached"].notna()
    return pd.Series(False, index=orders.index)


def sla_label_rule(orders: pd.DataFrame, *, canceled: CanceledRule = "exclude") -> SlaLabelRule:
    """Where the SLA labels of the orders that have one (canceled ones aside) come from."""
    labeled = sla_breached(orders, canceled=canceled).notna() & ~is_canceled(orders)
    explicit = _explicit(orders)[labeled]
    if not explicit.any():
        return "due_at"
    return "explicit" if explicit.all() else "mixed"


def breached_by(orders: pd.DataFrame, instants: Instants) -> np.ndarray:
    """Per instant: the order's label is the due-date rule and its due date had already passed (due_at < now)."""
    due_ns = utc_ns(_timestamps(orders, "due_at"))[instants.order]
    rule = (~_explicit(orders) & ~is_canceled(orders)).to_numpy(dtype=bool)[instants.order]
    return rule & (due_ns != np.iinfo(np.int64).min) & (due_ns < instants.at_ns)


def remaining_minutes(orders: pd.DataFrame, instants: Instants) -> np.ndarray:
    """Per instant: minutes from it until the order was done; NaN when not done or done before the instant."""
    done_ns = utc_ns(_timestamps(orders, "done_at"))[instants.order]
    minutes = (done_ns - instants.at_ns) * 1e-9 / 60.0
    return np.where((done_ns != np.iinfo(np.int64).min) & (minutes >= 0), minutes, np.nan)


def resolution_minutes(orders: pd.DataFrame) -> pd.Series:
    """Minutes from creation to done; NaN when not done."""
    return pd.Series(remaining_minutes(orders, at_creation(orders)), index=orders.index, dtype="float64")
