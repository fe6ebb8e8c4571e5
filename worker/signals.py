"""Run a long-lived async service until SIGTERM/SIGINT, then let it finish what it holds."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from osml.logs import configure_logging
from worker.settings import WorkerSettings


def run_service(service: Callable[[WorkerSettings, asyncio.Event], Awaitable[None]], settings: WorkerSettings) -> int:
    configure_logging(settings.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await service(settings, stop)

    asyncio.run(main())
    return 0
