"""Test helpers: the process and polling helpers of `osml.processes`, with children started in the repo root."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Final

from osml import processes
from osml.processes import VENV_BIN, free_port, http_ok, stop_process, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent

# The example order of POST /predict (docs/serving.md), written out here rather than imported from osml.schema, so that a change to
# the shared constant cannot quietly change what the tests check (test_validation compares the two).
SEED_FEATURES: Final[dict[str, Any]] = {
    "priority": "HIGH",
    "category": "TI",
    "createdHour": 14,
    "createdDayOfWeek": 2,
    "hasAssignee": 1,
    "dueInMinutes": 720,
}

__all__ = [
    "REPO_ROOT",
    "SEED_FEATURES",
    "VENV_BIN",
    "free_port",
    "http_ok",
    "start_process",
    "stop_process",
    "wait_until",
]


def start_process(args: list[str], *, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a child in its own process group from the repo root, output to `log`."""
    return processes.start_process(args, log=log, env=env, cwd=REPO_ROOT)
