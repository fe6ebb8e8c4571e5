"""A synthetic service-orders export with realistic structure, deterministic for a seed.

What it models (all numbers are the constants below):
- **Volume**: about `orders / 60` orders per day (20..150), so 100,000 orders span ~22 months. Creation times
  follow a weekday profile (Monday busiest, weekends quiet), a mild yearly season and an hourly profile peaking
  in working hours (08:00-18:00, Monday-Friday; the site's local time is taken to be UTC).
- **Mix**: priorities LOW 30% / MEDIUM 40% / HIGH 22% / CRITICAL 8%; eight categories with their own subcategories,
  team (assignment group) and duration scale; seven locations and four channels with small effects.
- **SLA policy in calendar hours**: CRITICAL 4h, HIGH 8h, MEDIUM 24h, LOW 72h; `due_at = created_at + policy`.
  8% of orders carry no due date (no contract). Calendar hours make off-hours orders risky: the clock runs
  while nobody works.
- **Resolution**: waiting for the next working start (on-call covers CRITICAL, so it waits 15% of that), then an
  active time, lognormal (sigma 0.8) around 35% of the policy and scaled by category, subcategory, location,
  channel, the assignee's own speed (lognormal, sd 0.35), no assignee (+65%) and the assignee's open workload
  (x (1 + open orders)^0.25); 2% of orders also wait for parts or a vendor (x4.5..x33): a long tail from
  minutes to months. About a third of the orders with a due date breach it (more off-hours and at weekends).
- **Assignees**: ~5 orders per working day each, within the team of the category, with uneven popularity (some
  are overloaded); 8% of orders are unassigned.
- **Cancellations** ~4% (LOW 6%, CRITICAL 2%), canceled part-way; the export is taken 4 hours after the last
  order, so the slowest recent orders are still open (no `done_at`).
- **History**: OPEN -> ASSIGNED (assigned orders, before work starts) -> IN_PROGRESS -> DONE or CANCELED, with
  along the way: a reassignment (ASSIGNED again, then IN_PROGRESS) on 8% of the started orders (20% of those
  with more than 8 active hours); a wait for the customer (WAITING_CUSTOMER) on 15% of those longer than an hour;
  the orders waiting for parts or a vendor spend most of their time ON_HOLD_PARTS; 5% of the done orders are
  resolved too early and reopened (RESOLVED -> REOPENED -> IN_PROGRESS). Rows carry `reassignment_count` and
  `reopen_count` so far. Only what happened before the export time is exported.
- **Drift** (`drift`, default 0 = none): over the span the active time of the facilities teams grows by
  x e^drift and that of the other teams shrinks by x e^(-drift/2), linearly in time, so durations, breach rates
  and which orders are risky all change (a negative drift turns both directions round); the newest orders
  show the newest regime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from training.data.canonical import HISTORY_FILE, ORDER_COLUMNS, ORDERS_FILE, OrdersData, csv_bytes
from training.data.postgres import load_into_postgres
from training.features import open_workload

__all__ = ["DEFAULT_START", "SLA_POLICY_HOURS", "generate", "load_into_postgres", "write_csv"]

DEFAULT_START: Final = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday
SLA_POLICY_HOURS: Final = {"LOW": 72, "MEDIUM": 24, "HIGH": 8, "CRITICAL": 4}
PRIORITY_SHARE: Final = {"LOW": 0.30, "MEDIUM": 0.40, "HIGH": 0.22, "CRITICAL": 0.08}
CANCEL_RATE: Final = {"LOW": 0.06, "MEDIUM": 0.04, "HIGH": 0.03, "CRITICAL": 0.02}
ON_CALL_WAIT_SHARE: Final = {"LOW": 1.0, "MEDIUM": 1.0, "HIGH": 1.0, "CRITICAL": 0.15}
NO_DUE_DATE_SHARE: Final = 0.08
UNASSIGNED_SHARE: Final = 0.08
WORKDAY_START_HOUR, WORKDAY_END_HOUR = 8, 18
EXPORT_LAG_MINUTES: Final = 240


@dataclass(frozen=True)
class Category:
    share: float
    scale: float  # multiplies the active time (typically 35% of the policy)
    team: str
    subcategories: tuple[str, ...]


CATEGORIES: Final = {
    "electrical": Category(0.14, 0.9, "facilities", ("lighting", "power outlet", "breaker", "generator")),
    "plumbing": Category(0.10, 1.2, "facilities", ("leak", "clog", "water heater")),
    "hvac": Category(0.12, 1.6, "facilities", ("no cooling", "no heating", "noise", "filter")),
    "cleaning": Category(0.08, 0.45, "services", ("spill", "restroom", "waste")),
    "it-hardware": Category(0.16, 1.0, "it-support", ("laptop", "printer", "monitor", "phone")),
    "it-software": Category(0.16, 0.6, "it-support", ("install", "license", "bug", "email")),
    "network": Category(0.10, 0.8, "it-infra", ("wifi", "vpn", "cabling")),
    "access": Category(0.14, 0.3, "it-infra", ("password", "badge", "permissions")),
}
LOCATIONS: Final = {  # name -> (share, log-effect on duration)
    "HQ": (0.30, -0.15),
    "Plant North": (0.18, 0.10),
    "Plant South": (0.14, 0.20),
    "Warehouse": (0.12, 0.0),
    "Branch Centro": (0.11, 0.15),
    "Branch Leste": (0.10, 0.25),
    "Remote Site": (0.05, 0.55),
}
CHANNELS: Final = {"portal": (0.45, 0.0), "email": (0.25, 0.12), "phone": (0.20, -0.12), "app": (0.10, 0.0)}
WEEKDAY_WEIGHT: Final = (1.25, 1.1, 1.0, 1.0, 0.9, 0.3, 0.2)
WORKDAY_HOURS: Final = (1, 1, 1, 1, 1, 2, 4, 8, 14, 16, 15, 13, 10, 12, 14, 13, 11, 8, 5, 3, 2, 2, 1, 1)
WEEKEND_HOURS: Final = (1, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 5, 4, 4, 4, 4, 3, 3, 3, 2, 2, 1, 1, 1)

_ACTIVE_SHARE_OF_POLICY: Final = 0.35
_ACTIVE_SIGMA: Final = 0.8
_WORKLOAD_EFFECT: Final = 0.25  # per log(1 + open orders)
_ASSIGNEE_ORDERS_PER_WORKDAY: Final = 5.0
_SECONDS_PER_DAY: Final = 86_400
_MIN_ACTIVE_MINUTES: Final = 5.0


def _choice(rng: np.random.Generator, table: dict[str, tuple[float, float]], n: int) -> np.ndarray:
    names = list(table)
    shares = np.array([table[k][0] for k in names])
    return rng.choice(len(names), size=n, p=shares / shares.sum())


def _creation_seconds(rng: np.random.Generator, n: int) -> tuple[np.ndarray, int]:
    """Seconds after the start for each order (sorted) and the number of days spanned."""
    per_day = min(150.0, max(20.0, n / 60))
    days = max(7, math.ceil(n / per_day))
    day_index = np.arange(days)
    weight = np.array(WEEKDAY_WEIGHT)[day_index % 7] * (1 + 0.15 * np.sin(2 * np.pi * day_index / 365.25))
    day = np.sort(rng.choice(days, size=n, p=weight / weight.sum()))
    weekend = day % 7 >= 5
    hour = np.empty(n, dtype=np.int64)
    for mask, profile in ((~weekend, WORKDAY_HOURS), (weekend, WEEKEND_HOURS)):
        p = np.array(profile, dtype=float)
        hour[mask] = rng.choice(24, size=int(mask.sum()), p=p / p.sum())
    seconds = day * _SECONDS_PER_DAY + hour * 3600 + rng.integers(0, 3600, size=n)
    return np.sort(seconds), days


def _wait_for_work(seconds: np.ndarray, start_weekday: int) -> np.ndarray:
    """Seconds from each instant to the next working time (0 inside working hours)."""
    day = seconds // _SECONDS_PER_DAY
    wait = np.full(len(seconds), np.inf)
    for ahead in range(4):  # the next working morning is at most 3 days away (Friday evening -> Monday)
        weekday = (start_weekday + day + ahead) % 7
        opens = (day + ahead) * _SECONDS_PER_DAY + WORKDAY_START_HOUR * 3600
        closes = (day + ahead) * _SECONDS_PER_DAY + WORKDAY_END_HOUR * 3600
        working = weekday < 5
        inside = working & (seconds >= opens) & (seconds < closes)
        wait[inside] = 0
        later = working & (opens > seconds)
        wait = np.where(later, np.minimum(wait, opens - seconds), wait)
    return wait


def generate(*, orders: int, seed: int, start: datetime | None = None, drift: float = 0.0) -> OrdersData:
    """`orders` synthetic orders and their status history; the same arguments give the same data.

    `start` is the first day (UTC; its time of day is ignored), `DEFAULT_START` when omitted; `drift` as above.
    """
    if orders < 1:
        raise ValueError("orders must be at least 1")
    start = DEFAULT_START if start is None else start
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    start = start.replace(hour=0, minute=0, second=0, microsecond=0)
    rng = np.random.default_rng(seed)
    n = orders

    created_s, days = _creation_seconds(rng, n)
    priorities = list(PRIORITY_SHARE)
    priority_idx = rng.choice(len(priorities), size=n, p=np.array(list(PRIORITY_SHARE.values())))
    priority = np.array(priorities, dtype=object)[priority_idx]
    policy_minutes = np.array([SLA_POLICY_HOURS[p] * 60 for p in priorities], dtype=float)[priority_idx]

    names = list(CATEGORIES)
    category_idx = rng.choice(len(names), size=n, p=np.array([c.share for c in CATEGORIES.values()]))
    category = np.array(names, dtype=object)[category_idx]
    log_effect = np.log(np.array([c.scale for c in CATEGORIES.values()]))[category_idx]
    subcategory = np.empty(n, dtype=object)
    for i, spec in enumerate(CATEGORIES.values()):
        mask = category_idx == i
        k = len(spec.subcategories)
        sub_idx = rng.integers(0, k, size=int(mask.sum()))
        subcategory[mask] = np.array(spec.subcategories, dtype=object)[sub_idx]
        log_effect[mask] += np.linspace(-0.3, 0.3, k)[sub_idx]
    team = np.array([c.team for c in CATEGORIES.values()], dtype=object)[category_idx]

    location_idx = _choice(rng, LOCATIONS, n)
    log_effect += np.array([v[1] for v in LOCATIONS.values()])[location_idx]
    channel_idx = _choice(rng, CHANNELS, n)
    log_effect += np.array([v[1] for v in CHANNELS.values()])[channel_idx]

    # Assignees: each team sized for its volume; uneven popularity inside a team overloads some people.
    workdays = max(1.0, days * 5 / 7)
    assignee = np.full(n, None, dtype=object)
    assignee_speed = np.ones(n)
    unassigned = rng.random(n) < UNASSIGNED_SHARE
    number = 0
    for team_name in sorted(set(team)):
        members = np.flatnonzero((team == team_name) & ~unassigned)
        size = max(2, round(len(members) / workdays / _ASSIGNEE_ORDERS_PER_WORKDAY))
        popularity = rng.dirichlet(np.full(size, 3.0))
        speed = rng.lognormal(0.0, 0.35, size=size)
        pick = rng.choice(size, size=len(members), p=popularity)
        ids = np.array([f"tech-{number + j + 1:03d}" for j in range(size)], dtype=object)
        assignee[members] = ids[pick]
        assignee_speed[members] = speed[pick]
        number += size
    log_effect += np.log(assignee_speed) + np.where(unassigned, 0.5, 0.0)
    elapsed = created_s / max(int(created_s.max()), 1)
    log_effect += drift * elapsed * np.where(team == "facilities", 1.0, -0.5)

    start_weekday = start.weekday()
    on_call = np.array([ON_CALL_WAIT_SHARE[p] for p in priorities])[priority_idx]
    wait_s = _wait_for_work(created_s, start_weekday) * on_call
    noise = rng.normal(0.0, _ACTIVE_SIGMA, size=n)
    stalled = rng.random(n) < 0.02
    log_effect += np.where(stalled, rng.uniform(1.5, 3.5, size=n), 0.0)
    base_log_active = np.log(policy_minutes * _ACTIVE_SHARE_OF_POLICY) + log_effect + noise

    def durations(extra_log: np.ndarray) -> np.ndarray:
        active = np.maximum(np.exp(base_log_active + extra_log), _MIN_ACTIVE_MINUTES) * 60
        return np.round(wait_s + active)

    # Workload slows work, and slower work keeps more orders open: one fixed-point step over the first pass.
    created_ts = pd.Series(pd.to_datetime(created_s, unit="s", utc=True))
    assignee_series = pd.Series(assignee, dtype="str")
    first_pass = durations(np.zeros(n))
    closed_first = created_ts + pd.to_timedelta(first_pass, unit="s")
    workload = np.nan_to_num(open_workload(assignee_series, created_ts, closed_first), nan=0.0)
    total_s = durations(_WORKLOAD_EFFECT * np.log1p(workload))
    active_s = total_s - wait_s

    cancel_rate = np.array([CANCEL_RATE[p] for p in priorities])[priority_idx]
    canceled = rng.random(n) < cancel_rate
    cancel_s = np.round(wait_s + active_s * rng.uniform(0.05, 0.8, size=n))
    end_s = np.where(canceled, cancel_s, total_s)
    export_s = created_s.max() + EXPORT_LAG_MINUTES * 60
    finished = created_s + end_s <= export_s
    has_due = rng.random(n) >= NO_DUE_DATE_SHARE

    origin = pd.Timestamp(start)

    def stamps(offsets: np.ndarray, mask: np.ndarray) -> pd.Series:
        values = origin + pd.to_timedelta(np.where(mask, offsets, 0), unit="s")
        return pd.Series(values).where(mask).astype("datetime64[ns, UTC]")

    everything = np.ones(n, dtype=bool)
    ids = np.array([f"OS-{i + 1:07d}" for i in range(n)], dtype=object)
    frame = pd.DataFrame(
        {
            "id": pd.Series(ids, dtype="str"),
            "category": pd.Series(category, dtype="str"),
            "priority": pd.Series(priority, dtype="str"),
            "created_at": stamps(created_s, everything),
            "due_at": stamps(created_s + policy_minutes * 60, has_due),
            "done_at": stamps(created_s + total_s, finished & ~canceled),
            "canceled_at": stamps(created_s + cancel_s, finished & canceled),
            "assignee_id": pd.Series(assignee, dtype="str"),
            "sla_breached": np.nan,
            "location": pd.Series(np.array(list(LOCATIONS), dtype=object)[location_idx], dtype="str"),
            "subcategory": pd.Series(subcategory, dtype="str"),
            "assignment_group": pd.Series(team, dtype="str"),
            "channel": pd.Series(np.array(list(CHANNELS), dtype=object)[channel_idx], dtype="str"),
        }
    )[list(ORDER_COLUMNS)]

    history = _history(
        rng,
        ids=ids,
        created_s=created_s,
        start_s=created_s + np.round(wait_s + active_s * rng.uniform(0.02, 0.25, size=n)),
        end_s=created_s + end_s,
        active_s=active_s,
        canceled=canceled,
        export_s=export_s,
        origin=origin,
        assigned=~unassigned,
        stalled=stalled,
    )
    return OrdersData(orders=frame, history=history, source=f"synthetic:orders={orders},seed={seed}")


def _history(
    rng: np.random.Generator,
    *,
    ids: np.ndarray,
    created_s: np.ndarray,
    start_s: np.ndarray,
    end_s: np.ndarray,
    active_s: np.ndarray,
    canceled: np.ndarray,
    export_s: int,
    origin: pd.Timestamp,
    assigned: np.ndarray,
    stalled: np.ndarray,
) -> pd.DataFrame:
    """Status rows of every order: each step at its own share of the time between start of work and the end."""
    n = len(ids)
    span = end_s - start_s

    def at(low: float, high: float) -> np.ndarray:
        return np.round(start_s + rng.uniform(low, high, size=n) * span)

    started = (start_s <= export_s) & (start_s < end_s)
    assign_s = np.round(created_s + rng.uniform(0.1, 0.7, size=n) * (start_s - created_s))
    reassigned = started & assigned & (rng.random(n) < np.where(active_s > 8 * 3600, 0.2, 0.08))
    reassign_s, back_s = at(0.03, 0.08), at(0.09, 0.12)
    waits = started & ~stalled & (active_s > 3600) & (rng.random(n) < 0.15)
    # a wait for parts is what makes a stalled order slow: it covers most of its life
    pause_s = np.where(stalled, at(0.14, 0.2), at(0.32, 0.5))
    resume_s = np.where(stalled, at(0.8, 0.88), at(0.52, 0.75))
    reopened = started & ~canceled & ~stalled & (rng.random(n) < 0.05)
    resolved_s, reopen_s, rework_s = at(0.8, 0.88), at(0.9, 0.94), at(0.95, 0.97)
    ended = end_s <= export_s

    def happened(mask: np.ndarray, when: np.ndarray) -> np.ndarray:
        return mask & (when <= export_s) & (when < end_s)

    was_reassigned, was_reopened = happened(reassigned, reassign_s), happened(reopened, reopen_s)

    steps = [  # (orders, status, time, reassignments so far, reopens so far)
        (np.ones(n, dtype=bool), "OPEN", created_s, 0, 0),
        (happened(assigned & (assign_s > created_s), assign_s), "ASSIGNED", assign_s, 0, 0),
        (started, "IN_PROGRESS", start_s, 0, 0),
        (happened(reassigned, reassign_s), "ASSIGNED", reassign_s, 1, 0),
        (happened(reassigned, back_s), "IN_PROGRESS", back_s, 1, 0),
        (happened(waits, pause_s), "WAITING_CUSTOMER", pause_s, 1, 0),
        (happened(stalled & started, pause_s), "ON_HOLD_PARTS", pause_s, 1, 0),
        (happened((waits | stalled) & started, resume_s), "IN_PROGRESS", resume_s, 1, 0),
        (happened(reopened, resolved_s), "RESOLVED", resolved_s, 1, 0),
        (happened(reopened, reopen_s), "REOPENED", reopen_s, 1, 1),
        (happened(reopened, rework_s), "IN_PROGRESS", rework_s, 1, 1),
        (ended & ~canceled, "DONE", end_s, 1, 1),
        (ended & canceled, "CANCELED", end_s, 1, 1),
    ]
    order_index = np.concatenate([np.flatnonzero(mask) for mask, *_ in steps])
    status = np.concatenate([np.full(int(mask.sum()), name, dtype=object) for mask, name, *_ in steps])
    seconds = np.concatenate([when[mask] for mask, _, when, *_ in steps])
    step = np.concatenate([np.full(int(mask.sum()), rank) for rank, (mask, *_) in enumerate(steps)])
    # counters count what happened to the order up to that row (a step's 1 applies only to orders it happened to)
    after_reassignment = np.concatenate([np.full(int(m.sum()), r) for m, _, _, r, _ in steps])
    after_reopen = np.concatenate([np.full(int(m.sum()), r) for m, _, _, _, r in steps])
    reassignments = after_reassignment * was_reassigned[order_index]
    reopens = after_reopen * was_reopened[order_index]
    sort = np.lexsort((step, order_index))
    return pd.DataFrame(
        {
            "order_id": pd.Series(ids[order_index[sort]], dtype="str"),
            "status": pd.Series(status[sort], dtype="str"),
            "changed_at": pd.Series(origin + pd.to_timedelta(seconds[sort], unit="s")).astype("datetime64[ns, UTC]"),
            "reassignment_count": reassignments[sort].astype("float64"),
            "reopen_count": reopens[sort].astype("float64"),
        }
    )


def write_csv(data: OrdersData, out_dir: Path) -> list[Path]:
    """Write `orders.csv` (+ `order_status_history.csv` when there is history) into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / ORDERS_FILE]
    written[0].write_bytes(csv_bytes(data.orders[list(ORDER_COLUMNS)]))
    if data.history is not None:
        history_path = out_dir / HISTORY_FILE
        history_path.write_bytes(csv_bytes(data.history))
        written.append(history_path)
    return written
