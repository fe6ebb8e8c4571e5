"""Child processes and readiness polling, shared by the local stack launcher, `make bench` and the tests.

Readiness is always polled with a deadline, never assumed after a sleep.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
from tenacity import RetryError, Retrying, retry_if_exception_type, retry_if_result, stop_after_delay, wait_fixed

T = TypeVar("T")

# the venv this interpreter runs from: its console scripts (mlflow, moto_server, osml) are started by path
VENV_BIN = Path(sys.executable).parent


def wait_until(condition: Callable[[], T], *, timeout: float, interval: float = 0.05, what: str = "") -> T:
    """Poll `condition` until it returns a truthy value; fail with `what` once `timeout` seconds pass.

    The condition may raise until the thing is up: that counts as not yet, and the last error is reported.
    """
    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(interval),
        retry=retry_if_exception_type(Exception) | retry_if_result(lambda value: not value),
    )
    try:
        return retrying(condition)
    except RetryError as exc:
        last = exc.last_attempt
        error = last.exception() if last.failed else None
        raise TimeoutError(f"timed out after {timeout}s waiting for {what or condition}: {error!r}") from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have the kernel send `sig` to this process when its parent dies, however it dies (SIGKILL included).

    One system call (Linux `prctl(PR_SET_PDEATHSIG)`, kept across exec); no library does it better than ctypes.
    It fires when the parent *thread* that started this process exits, so start such children from a thread
    that lives as long as the parent (the main thread). Elsewhere than Linux it does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the call: nobody will send the signal
        os.kill(os.getpid(), sig)


def start_process(
    args: list[str],
    *,
    log: Path | None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    with_parent: bool = False,
    inherit_env: bool = True,
) -> subprocess.Popen[bytes]:
    """Start a child in its own process group (so it can be stopped with everything it spawns), output to `log`
    (None: this process's own output). `with_parent`: the child gets SIGTERM when this process dies.
    `inherit_env=False`: the child sees `env` only."""
    environment = {**os.environ, **(env or {})} if inherit_env else dict(env or {})
    with contextlib.ExitStack() as stack:
        out = None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = stack.enter_context(log.open("ab"))
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            env=environment,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=die_with_parent if with_parent else None,
        )


def stop_process(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Signal the child's whole process group; SIGKILL it if it has not exited within `timeout`."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
