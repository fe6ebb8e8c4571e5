"""Event loops for the event side: uvloop (about half of asyncio's per-message overhead, which dominates at
hundreds of messages per second) and long-lived services that stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import uvloop

from osml.logs import configure_logging
from worker.settings import WorkerSettings

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def run_service(service: Callable[[WorkerSettings, asyncio.Event], Awaitable[int]], settings: WorkerSettings) -> int:
    """Run `service` until a signal asks it to stop; it then finishes the work in hand and returns its exit status."""
    configure_logging(settings.log_level)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await service(settings, stop)

    return run(main())
