"""Local file sources: one CSV, a folder of CSVs, or a .zip of CSVs.

A folder or zip holds `orders.csv` (+ optional `order_status_history.csv`), at any depth in a zip; when it has
no `orders.csv` but exactly one CSV, that one is the orders file. A single `orders.csv` file picks up an
`order_status_history.csv` beside it. A CSV with the UCI incident event log's columns is handed to
`training.data.uci.load_uci`.
"""

from __future__ import annotations

import importlib
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, Final

import pandas as pd

from training.data.canonical import HISTORY_FILE, ORDERS_FILE, OrdersData, canonical_history, canonical_orders
from training.data.errors import DataError

UCI_COLUMNS: Final = frozenset({"number", "incident_state", "made_sla"})
_NA_VALUES: Final = ["", "NULL", "null", "NaN", "nan", "None"]

Opener = Callable[[], IO[bytes]]


def read_csv(open_file: Opener, *, label: str, nrows: int | None = None) -> pd.DataFrame:
    """Every value as text (the usual NULL spellings missing), for `canonical_orders` / `canonical_history`."""
    try:
        with open_file() as handle:
            return pd.read_csv(
                handle,
                dtype=str,
                keep_default_na=False,
                na_values=_NA_VALUES,
                encoding="utf-8-sig",
                nrows=nrows,
            )
    except pd.errors.EmptyDataError as exc:
        raise DataError("the file is empty (no header row)", source=label) from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"not a readable CSV file: {exc}", source=label) from exc


def _is_uci(open_file: Opener, *, label: str) -> bool:
    header = read_csv(open_file, label=label, nrows=0)
    return UCI_COLUMNS.issubset(str(c).strip().lower() for c in header.columns)


def _load_uci(path: Path, *, source: str) -> OrdersData:
    try:
        uci = importlib.import_module("training.data.uci")
    except ModuleNotFoundError as exc:
        if exc.name != "training.data.uci":
            raise
        raise DataError(
            "this is the UCI incident event log, but the UCI adapter is not installed", source=source
        ) from exc
    data: OrdersData = uci.load_uci(path, source=source)
    return data


def _orders_data(orders: Opener, history: Opener | None, *, label: str, history_label: str, ref: str) -> OrdersData:
    frame = canonical_orders(read_csv(orders, label=label), source=label)
    history_frame = canonical_history(read_csv(history, label=history_label), source=history_label) if history else None
    return OrdersData(orders=frame, history=history_frame, source=ref)


def _pick(names: list[str], wanted: str) -> str | None:
    """The shallowest name whose last part is `wanted` (case-insensitive)."""
    matches = [n for n in names if PurePosixPath(n).name.lower() == wanted]
    return min(matches, key=lambda n: (n.count("/"), n)) if matches else None


def _choose_orders(names: list[str], *, label: str) -> str:
    chosen = _pick(names, ORDERS_FILE)
    if chosen is not None:
        return chosen
    csvs = [n for n in names if n.lower().endswith(".csv")]
    if len(csvs) == 1:
        return csvs[0]
    found = ", ".join(sorted(csvs)) or "no CSV files"
    raise DataError(f"expected {ORDERS_FILE} (or exactly one CSV file), found: {found}", source=label)


def read_zip(path: Path, *, label: str, ref: str) -> OrdersData:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise DataError("not a valid zip file", source=label) from exc
    with archive:
        names = [n for n in archive.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")]
        orders_name = _choose_orders(names, label=label)
        orders_label = f"{label}/{orders_name}"

        def opener(name: str) -> Opener:
            return lambda: archive.open(name)

        if _is_uci(opener(orders_name), label=orders_label):
            return _load_uci(path, source=ref)
        history_name = _pick([n for n in names if n != orders_name], HISTORY_FILE)
        return _orders_data(
            opener(orders_name),
            opener(history_name) if history_name else None,
            label=orders_label,
            history_label=f"{label}/{history_name}",
            ref=ref,
        )


def _file_opener(path: Path) -> Opener:
    return lambda: path.open("rb")


def read_csv_file(path: Path, *, label: str, ref: str, history: Path | None = None) -> OrdersData:
    if _is_uci(_file_opener(path), label=label):
        return _load_uci(path, source=ref)
    history_label = str(Path(label).parent / history.name) if history else ""
    return _orders_data(
        _file_opener(path),
        _file_opener(history) if history else None,
        label=label,
        history_label=history_label,
        ref=ref,
    )


def read_folder(path: Path, *, label: str, ref: str) -> OrdersData:
    names = sorted(p.name for p in path.iterdir() if p.is_file())
    orders_name = _choose_orders(names, label=label)
    history_name = _pick([n for n in names if n != orders_name], HISTORY_FILE)
    return read_csv_file(
        path / orders_name,
        label=f"{label.rstrip('/')}/{orders_name}",
        ref=ref,
        history=path / history_name if history_name else None,
    )


def read_local(path: Path, *, ref: str, label: str | None = None) -> OrdersData:
    """Read a CSV, folder or zip; `label` names it in errors (defaults to the path)."""
    label = label or str(path)
    if path.is_dir():
        return read_folder(path, label=label, ref=ref)
    if not path.is_file():
        raise DataError("no such file or folder", source=label)
    if zipfile.is_zipfile(path):
        return read_zip(path, label=label, ref=ref)
    sibling = path.with_name(HISTORY_FILE)
    history = sibling if path.name.lower() == ORDERS_FILE and sibling.is_file() else None
    return read_csv_file(path, label=label, ref=ref, history=history)


def check_local(path: Path) -> None:
    """Cheap existence check for validate_ref: the file exists, or the folder holds the orders CSV."""
    if path.is_dir():
        _choose_orders(sorted(p.name for p in path.iterdir() if p.is_file()), label=str(path))
    elif not path.is_file():
        raise DataError("no such file or folder", source=str(path))
