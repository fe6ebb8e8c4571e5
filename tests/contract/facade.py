"""Real facade (`osml serve`) and trainer (`osml trainer`) processes for contract and integration tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

from tests.support import VENV_BIN, free_port, http_ok, start_process, stop_process, wait_until


@dataclass(frozen=True)
class FacadeProcess:
    url: str
    proc: Popen[bytes]
    log: Path
    predict_headers: dict[str, str]
    admin_headers: dict[str, str]


@contextmanager
def facade_process(
    workdir: Path,
    *,
    tracking_uri: str,
    database_url: str,
    env: dict[str, str] | None = None,
    ready: bool = True,
    port: int | None = None,
) -> Iterator[FacadeProcess]:
    """Start `osml serve` on `port` (default: a free one); wait for /health/ready (a loaded pair) or only /health."""
    predict_key, admin_key = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    port = port or free_port()
    log = workdir / f"facade-{port}.log"
    proc = start_process(
        [str(VENV_BIN / "osml"), "serve", "--port", str(port)],
        log=log,
        env={
            "MLFLOW_TRACKING_URI": tracking_uri,
            "OSML_PREDICT_API_KEY": predict_key,
            "OSML_ADMIN_API_KEY": admin_key,
            "OSML_DATABASE_URL": database_url,
            **(env or {}),
        },
    )
    url = f"http://127.0.0.1:{port}"
    try:
        path = "/health/ready" if ready else "/health"
        wait_until(lambda: proc.poll() is None and http_ok(url + path), timeout=120, what=f"facade ({log})")
        json = {"Content-Type": "application/json"}
        yield FacadeProcess(
            url=url,
            proc=proc,
            log=log,
            predict_headers={**json, "X-API-Key": predict_key},
            admin_headers={**json, "X-API-Key": admin_key},
        )
    finally:
        stop_process(proc)


@contextmanager
def trainer_process(
    workdir: Path, *, tracking_uri: str, database_url: str, name: str = "trainer", env: dict[str, str] | None = None
) -> Iterator[Popen[bytes]]:
    """Start `osml trainer` on the job table at `database_url`; its log is `workdir/<name>.log`."""
    log = workdir / f"{name}.log"
    proc = start_process(
        [str(VENV_BIN / "osml"), "trainer"],
        log=log,
        env={
            "MLFLOW_TRACKING_URI": tracking_uri,
            "OSML_DATABASE_URL": database_url,
            "OSML_TRAINER_POLL_SECONDS": "0.2",
            **(env or {}),
        },
    )
    try:
        wait_until(lambda: proc.poll() is None and "trainer ready" in log.read_text(), timeout=60, what=str(log))
        yield proc
    finally:
        stop_process(proc)
