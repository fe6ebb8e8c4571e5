"""`osml up` (what `make up` runs) from an empty directory with no service running: trains on synthetic data,
serves the facade and the MLflow UI, prints a curl that works, and Ctrl-C stops both."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest_training import FAST_CANDIDATES
from tests.support import VENV_BIN, free_port, http_ok, wait_until

pytestmark = pytest.mark.integration


def _port_open(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
        return True
    except httpx.HTTPError:
        return False


def test_up_trains_serves_and_stops_cleanly(tmp_path: Path) -> None:
    facade_port, ui_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OSML_", "MLFLOW_"))}
    env["OSML_PORT"] = str(facade_port)
    out = tmp_path / "up.out"
    with out.open("wb") as stdout, (tmp_path / "up.err").open("wb") as stderr:
        proc = subprocess.Popen(
            [
                str(VENV_BIN / "osml"),
                "up",
                "--orders",
                "1500",
                "--candidates",
                ",".join(FAST_CANDIDATES),
                "--ui-port",
                str(ui_port),
            ],
            cwd=tmp_path,
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: proc.poll() is None and http_ok(f"http://127.0.0.1:{facade_port}/health/ready"),
            timeout=300,
            what=f"osml up (see {tmp_path})",
        )
        printed = out.read_text()
        assert f"http://127.0.0.1:{ui_port}" in printed
        curl = next(line.strip() for line in printed.splitlines() if line.strip().startswith("curl "))
        answer = subprocess.run(shlex.split(curl), capture_output=True, text=True, check=True, timeout=30).stdout
        assert re.search(r'"modelVersion":"\d{4}-\d{2}-\d{2}_\d{3}"', answer), answer
        assert '"slaRisk"' in answer and '"etaMinutes"' in answer
        wait_until(lambda: http_ok(f"http://127.0.0.1:{ui_port}/health"), timeout=120, what="the MLflow UI")
        assert (tmp_path / ".osml" / "mlflow.db").exists()
        assert (tmp_path / ".osml" / "api-keys.json").stat().st_mode & 0o077 == 0
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole foreground group
        code = proc.wait(timeout=60)
    assert code == 0
    assert not _port_open(facade_port) and not _port_open(ui_port)
