"""Backoff with jitter, a circuit breaker and the retry loop for transient failures."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits uniformly in [0, min(maximum, initial * 2**n)]."""

    initial: float
    maximum: float
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def ceiling(self, attempt: int) -> float:
        return min(self.maximum, self.initial * 2 ** min(attempt, 32))

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(0, self.ceiling(attempt))


class TransientError(Exception):
    """Worth retrying: the same call may succeed later (service down, timeout, 5xx)."""

    def __init__(self, message: str, *, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(TransientError):
    """The breaker refuses calls for now; `retry_after` says when it lets a probe through."""


class CircuitBreaker:
    """Opens after `failure_threshold` consecutive failures; after `reset_s` lets one probe through (half-open);
    the probe's success closes it, its failure opens it again."""

    def __init__(self, *, failure_threshold: int, reset_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = failure_threshold
        self._reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self._reset_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def before_call(self) -> None:
        """Raise CircuitOpen unless a call may go out now."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return
        assert self._opened_at is not None
        remaining = max(0.0, self._opened_at + self._reset_s - self._clock())
        raise CircuitOpen(f"circuit open, next probe in {remaining:.2f}s", retry_after=remaining or self._reset_s)

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        reopen = self._probing or self._failures >= self._threshold
        self._probing = False
        if reopen:
            if self._opened_at is None:
                log.warning("circuit breaker opened", extra={"failures": self._failures})
            self._opened_at = self._clock()


async def retry_transient(
    call: Callable[[], Awaitable[T]], *, backoff: Backoff, what: str, stop: asyncio.Event | None = None
) -> T:
    """Run `call` until it succeeds; TransientError means wait and try again (never give up: a transient failure
    must not turn into a dead letter). Other exceptions propagate; StopRequested when `stop` is set while waiting."""
    attempt = 0
    while True:
        try:
            return await call()
        except TransientError as exc:
            wait = max(backoff.delay(attempt), exc.retry_after)
            if not isinstance(exc, CircuitOpen):
                log.warning(
                    "transient failure, retrying",
                    extra={"what": what, "attempt": attempt + 1, "error": str(exc), "retryIn": round(wait, 3)},
                )
            attempt += 1
            if stop is None:
                await asyncio.sleep(wait)
            elif await stopped_within(stop, wait):
                raise StopRequested(what) from exc


class StopRequested(Exception):
    """Shutdown was requested while a retry was waiting."""


async def stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds`; True as soon as `stop` is set."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
