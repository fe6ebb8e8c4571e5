"""`osml up` (what `make up` runs) from an empty directory with no service running: trains on synthetic data,
serves the facade, a trainer and the MLflow UI, prints a curl that works, and Ctrl-C stops everything. Killed
by SIGKILL of its parent (`make up` in a closed terminal), it leaves nothing running either."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest_training import FAST_CANDIDATES, TrainPair
from tests.support import VENV_BIN, free_port, http_ok, wait_until

pytestmark = pytest.mark.integration


def _port_open(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
        return True
    except httpx.HTTPError:
        return False


def processes_in(directory: Path) -> list[int]:
    """Pids whose working directory is `directory`: `osml up` and everything it started there."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == directory.resolve():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:  # it exited meanwhile
        return ""


def up_command(ui_port: int) -> list[str]:
    return [
        str(VENV_BIN / "osml"),
        "up",
        "--orders",
        "1500",
        "--candidates",
        ",".join(FAST_CANDIDATES),
        "--ui-port",
        str(ui_port),
    ]


def up_env(facade_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OSML_", "MLFLOW_"))}
    env["OSML_PORT"] = str(facade_port)
    return env


def test_up_trains_serves_and_stops_cleanly(tmp_path: Path) -> None:
    facade_port, ui_port = free_port(), free_port()
    out = tmp_path / "up.out"
    with out.open("wb") as stdout, (tmp_path / "up.err").open("wb") as stderr:
        proc = subprocess.Popen(
            up_command(ui_port),
            cwd=tmp_path,
            env=up_env(facade_port),
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    facade = f"http://127.0.0.1:{facade_port}"
    try:
        wait_until(
            lambda: proc.poll() is None and http_ok(f"{facade}/health/ready"),
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
        # the UI runs without MLflow's GenAI job runner (its huey consumers: seven processes, ~2.5 GB)
        job_runners = [c for c in map(command_line, processes_in(tmp_path)) if "mlflow.server.jobs" in c]
        assert not job_runners, job_runners
        assert (tmp_path / ".osml" / "mlflow.db").exists()
        assert (tmp_path / ".osml" / "api-keys.json").stat().st_mode & 0o077 == 0

        # its trainer runs what POST /train records (this job fails at once: its data does not exist)
        admin = {"X-API-Key": json.loads((tmp_path / ".osml" / "api-keys.json").read_text())["admin_api_key"]}
        body = {"datasetRef": str(tmp_path / "missing.csv")}
        job_id = httpx.post(f"{facade}/train", json=body, headers=admin, timeout=30).json()["jobId"]

        def job_finished() -> dict[str, str] | None:
            view: dict[str, str] = httpx.get(f"{facade}/train/jobs/{job_id}", headers=admin, timeout=30).json()
            return view if view["status"] in {"done", "failed"} else None

        view = wait_until(job_finished, timeout=120, what="the local trainer to run the job")
        assert view["status"] == "failed" and "no such file or folder" in view["reason"], view
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole foreground group
        code = proc.wait(timeout=60)
    assert code == 0
    assert not _port_open(facade_port) and not _port_open(ui_port)
    wait_until(lambda: not processes_in(tmp_path), timeout=30, what="every process osml up started to exit")


def test_up_dies_with_its_parent_even_by_sigkill(tmp_path: Path, trained_pair: TrainPair) -> None:
    trained_pair(f"sqlite:///{tmp_path / '.osml' / 'mlflow.db'}")  # a registry with a pair: up starts at once
    facade_port, ui_port = free_port(), free_port()
    # stands in for `make up`: a parent that only waits for `osml up`
    parent = [sys.executable, "-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"]
    with (tmp_path / "up.log").open("wb") as log:
        make = subprocess.Popen(
            [*parent, *up_command(ui_port)],
            cwd=tmp_path,
            env=up_env(facade_port),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: (
                http_ok(f"http://127.0.0.1:{facade_port}/health/ready")
                and http_ok(f"http://127.0.0.1:{ui_port}/health")
            ),
            timeout=180,
            what=f"osml up (see {tmp_path / 'up.log'})",
        )
        started = processes_in(tmp_path)
        assert len(started) >= 3, started  # osml up, its trainer, the UI (and the UI's server process)
        os.kill(make.pid, signal.SIGKILL)
        make.wait(timeout=10)
        wait_until(lambda: not processes_in(tmp_path), timeout=60, what="osml up and its children to exit")
        assert not _port_open(facade_port) and not _port_open(ui_port)
    finally:
        for pid in processes_in(tmp_path):  # only on failure: leave no stray process behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
