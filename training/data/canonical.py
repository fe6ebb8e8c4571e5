"""The canonical orders export (its columns are listed below) and its validation, shared by every source.

Every source (CSV, zip, folder, S3, PostgreSQL, the UCI adapter) hands its raw frame to `canonical_orders` /
`canonical_history`, which check it and return one normalised shape:

- column names are matched case-insensitively, camelCase or snake_case (`createdAt` == `created_at`);
  unknown columns are dropped, the optional context columns are kept (and always present, NaN when absent);
- text columns use pandas' string dtype (NaN when missing), `priority` is upper-case `LOW|MEDIUM|HIGH|CRITICAL`;
- timestamps are ISO-8601, naive ones taken as UTC, returned as `datetime64[ns, UTC]`;
- `sla_breached` is float 0/1 (NaN when unknown);
- the history's optional counters (`reassignment_count`, `reopen_count`) are float, whole and >= 0 (NaN when unknown),
  and present only when the source has them.

A problem raises `DataError` naming the source, the column and the 1-based data row (plus the order id).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from osml.schema import Priority
from training.data.errors import DataError

REQUIRED_COLUMNS: Final = ("id", "category", "priority", "created_at")
OPTIONAL_COLUMNS: Final = ("due_at", "done_at", "canceled_at", "assignee_id", "sla_breached")
CONTEXT_COLUMNS: Final = ("location", "subcategory", "assignment_group", "channel")
ORDER_COLUMNS: Final = REQUIRED_COLUMNS + OPTIONAL_COLUMNS + CONTEXT_COLUMNS
TIMESTAMP_COLUMNS: Final = ("created_at", "due_at", "done_at", "canceled_at")
TEXT_COLUMNS: Final = ("id", "category", "assignee_id", *CONTEXT_COLUMNS)
HISTORY_COLUMNS: Final = ("order_id", "status", "changed_at")
# Optional per-row counters some sources keep (the UCI log does): reassignments and reopens so far, as of that row.
HISTORY_COUNTER_COLUMNS: Final = ("reassignment_count", "reopen_count")
_KNOWN_COLUMNS: Final = frozenset(ORDER_COLUMNS + HISTORY_COLUMNS + HISTORY_COUNTER_COLUMNS)

ORDERS_FILE: Final = "orders.csv"
HISTORY_FILE: Final = "order_status_history.csv"

_PRIORITIES: Final = tuple(p.value for p in Priority)
_FLAG_VALUES: Final = {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0, "false": 0.0, "true": 1.0, "no": 0.0, "yes": 1.0}
_TS_MIN: Final = pd.Timestamp("1900-01-01", tz="UTC")
_TS_MAX: Final = pd.Timestamp("2200-01-01", tz="UTC")
_TS_DTYPE: Final = "datetime64[ns, UTC]"


@dataclass(frozen=True)
class OrdersData:
    """Orders in canonical form, their optional status history, and the datasetRef they came from."""

    orders: pd.DataFrame
    history: pd.DataFrame | None
    source: str


def snake_case(name: object) -> str:
    """`createdAt`, `Created At`, `CREATED_AT` -> `created_at`."""
    text = re.sub(r"[\s\-]+", "_", str(name).strip())
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", text).lower()


def _normalised_columns(raw: pd.DataFrame, *, source: str) -> pd.DataFrame:
    names = [snake_case(c) for c in raw.columns]
    seen: set[str] = set()
    for position, name in enumerate(names, start=1):
        if name in seen:
            column = name if name in _KNOWN_COLUMNS else f"#{position}"
            raise DataError("a column name appears twice (after case normalisation)", source=source, column=column)
        seen.add(name)
    frame = raw.copy(deep=False)
    frame.columns = pd.Index(names)
    return frame


def _require_columns(frame: pd.DataFrame, required: Sequence[str], *, source: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        # until the header proves this is an orders export, nothing of the file is quoted back: any file's first
        # line is a "header", and the caller may not be entitled to read it
        known = [str(c) for c in frame.columns if c in _KNOWN_COLUMNS]
        others = len(frame.columns) - len(known)
        found = ", ".join(known) or "none of the known columns"
        if others:
            found += f", and {others} other column(s)"
        raise DataError(
            f"missing required column(s) {', '.join(missing)} (found: {found})", source=source, column=missing[0]
        )


def _row_error(
    message: str, mask: pd.Series, *, frame: pd.DataFrame, source: str, column: str, id_column: str | None
) -> DataError:
    position = int(np.flatnonzero(mask.to_numpy())[0])
    if id_column is not None and id_column in frame.columns and pd.notna(frame[id_column].iloc[position]):
        message = f"{message} (id {frame[id_column].iloc[position]})"
    return DataError(message, source=source, column=column, row=position + 1)


def _text(series: pd.Series) -> pd.Series:
    text = series.astype("str").str.strip()
    return text.where(text != "")


def _timestamps(series: pd.Series, *, frame: pd.DataFrame, source: str, column: str, id_column: str) -> pd.Series:
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        parsed = series.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(series.dtype):
        parsed = series.dt.tz_localize("UTC")
    else:
        text = _text(series)
        parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
        bad = text.notna() & parsed.isna()
        if bad.any():
            value = text[bad].iloc[0]
            raise _row_error(
                f"unparsable timestamp '{value}' (expected ISO-8601, e.g. 2026-05-01T10:00:00Z)",
                bad,
                frame=frame,
                source=source,
                column=column,
                id_column=id_column,
            )
    out_of_range = parsed.notna() & ((parsed < _TS_MIN) | (parsed > _TS_MAX))
    if out_of_range.any():
        raise _row_error(
            f"timestamp {parsed[out_of_range].iloc[0]} is out of range",
            out_of_range,
            frame=frame,
            source=source,
            column=column,
            id_column=id_column,
        )
    return parsed.astype(_TS_DTYPE)


def _require_values(frame: pd.DataFrame, columns: Sequence[str], *, source: str, id_column: str | None) -> None:
    for column in columns:
        missing = frame[column].isna()
        if missing.any():
            raise _row_error("missing value", missing, frame=frame, source=source, column=column, id_column=id_column)


def canonical_orders(raw: pd.DataFrame, *, source: str) -> pd.DataFrame:
    """Validate a raw orders frame and return it in canonical form (see the module docstring)."""
    frame = _normalised_columns(raw, source=source)
    _require_columns(frame, REQUIRED_COLUMNS, source=source)
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for column in TEXT_COLUMNS:
        out[column] = _text(frame[column].reset_index(drop=True)) if column in frame.columns else np.nan
        out[column] = out[column].astype("str")
    _require_values(out, ("id", "category"), source=source, id_column="id")

    priority = _text(frame["priority"].reset_index(drop=True)).str.upper()
    unknown = ~priority.isin(_PRIORITIES)
    if unknown.any():
        value = priority[unknown].iloc[0]
        shown = "empty" if pd.isna(value) else f"'{frame['priority'].iloc[int(np.flatnonzero(unknown)[0])]}'"
        raise _row_error(
            f"unknown priority {shown} (expected one of {', '.join(_PRIORITIES)})",
            unknown,
            frame=out,
            source=source,
            column="priority",
            id_column="id",
        )
    out["priority"] = priority

    for column in TIMESTAMP_COLUMNS:
        if column in frame.columns:
            values = frame[column].reset_index(drop=True)
            out[column] = _timestamps(values, frame=out, source=source, column=column, id_column="id")
        else:
            out[column] = pd.Series(pd.NaT, index=out.index, dtype=_TS_DTYPE)
    _require_values(out, ("created_at",), source=source, id_column="id")

    out["sla_breached"] = (
        _flags(frame["sla_breached"].reset_index(drop=True), frame=out, source=source)
        if "sla_breached" in frame.columns
        else np.nan
    )
    out["sla_breached"] = out["sla_breached"].astype("float64")

    duplicated = out["id"].duplicated()
    if duplicated.any():
        raise _row_error("duplicate order id", duplicated, frame=out, source=source, column="id", id_column="id")
    return out[list(ORDER_COLUMNS)]


def _flags(series: pd.Series, *, frame: pd.DataFrame, source: str) -> pd.Series:
    text = _text(series).str.lower()
    flags = text.map(_FLAG_VALUES)
    bad = text.notna() & flags.isna()
    if bad.any():
        raise _row_error(
            f"sla_breached must be 0/1 or true/false, got '{text[bad].iloc[0]}'",
            bad,
            frame=frame,
            source=source,
            column="sla_breached",
            id_column="id",
        )
    return flags.astype("float64")


def canonical_history(raw: pd.DataFrame, *, source: str) -> pd.DataFrame:
    """Validate a raw status-history frame: `order_id`, `status` (upper-case), `changed_at` (UTC)."""
    frame = _normalised_columns(raw, source=source)
    _require_columns(frame, HISTORY_COLUMNS, source=source)
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    out["order_id"] = _text(frame["order_id"].reset_index(drop=True))
    out["status"] = _text(frame["status"].reset_index(drop=True)).str.upper()
    _require_values(out, ("order_id", "status"), source=source, id_column=None)
    changed = frame["changed_at"].reset_index(drop=True)
    out["changed_at"] = _timestamps(changed, frame=out, source=source, column="changed_at", id_column="order_id")
    _require_values(out, ("changed_at",), source=source, id_column="order_id")
    for column in HISTORY_COUNTER_COLUMNS:
        if column in frame.columns:
            out[column] = _counts(frame[column].reset_index(drop=True), frame=out, source=source, column=column)
    return out


def _counts(series: pd.Series, *, frame: pd.DataFrame, source: str, column: str) -> pd.Series:
    text = _text(series.astype("str"))
    counts = pd.to_numeric(text, errors="coerce")
    bad = text.notna() & ~(counts.notna() & (counts >= 0) & (counts % 1 == 0))
    if bad.any():
        raise _row_error(
            f"{column} must be a whole number >= 0, got '{text[bad].iloc[0]}'",
            bad,
            frame=frame,
            source=source,
            column=column,
            id_column="order_id",
        )
    return counts.astype("float64")


def _iso_utc(series: pd.Series) -> pd.Series:
    """ISO-8601 text with a Z suffix, seconds unless some value has a fraction (vectorised: numpy, not strftime)."""
    values = series.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")
    present = ~np.isnat(values)
    whole_seconds = (values[present].astype("int64") % 1_000_000_000 == 0).all()
    text = pd.Series(
        np.datetime_as_string(values, unit="s" if whole_seconds else "ns"), index=series.index, dtype="str"
    )
    return (text + "Z").where(present)


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """A frame as CSV bytes: ISO-8601 UTC timestamps, 0/1 flags (used by writers and the Postgres loader)."""
    converted = {c: _iso_utc(frame[c]) for c in frame.columns if isinstance(frame[c].dtype, pd.DatetimeTZDtype)}
    for column in ("sla_breached", *HISTORY_COUNTER_COLUMNS):
        if column in frame.columns:
            converted[column] = frame[column].astype("Int64")
    return frame.assign(**converted).to_csv(index=False).encode()
