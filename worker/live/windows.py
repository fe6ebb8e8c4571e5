"""Rolling windows over the prediction instant: `1d` holds the predictions made in the day before the evaluation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

_WINDOW: Final = re.compile(r"^(\d+)([hd])$")
_UNIT: Final = {"h": timedelta(hours=1), "d": timedelta(days=1)}


@dataclass(frozen=True)
class Window:
    name: str
    span: timedelta


def parse_windows(text: str) -> tuple[Window, ...]:
    """`"1d,7d,30d"` -> windows, shortest first; a malformed or repeated one raises ValueError."""
    windows: dict[str, Window] = {}
    for raw in text.split(","):
        name = raw.strip()
        match = _WINDOW.match(name)
        if match is None or int(match.group(1)) == 0:
            raise ValueError(f"window {name!r} is not a positive count of hours or days, e.g. 12h or 7d")
        if name in windows:
            raise ValueError(f"window {name!r} is listed twice")
        windows[name] = Window(name, int(match.group(1)) * _UNIT[match.group(2)])
    return tuple(sorted(windows.values(), key=lambda w: w.span))
