"""Retries of transient failures (tenacity: exponential backoff with full jitter, stop-aware waits) and the circuit
breaker in front of the facade."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from prometheus_client import Counter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, stop_never
from tenacity.wait import wait_random_exponential

T = TypeVar("T")

log = logging.getLogger(__name__)

RETRIES = Counter("osml_retries", "retries after a transient failure, by what was retried", ["what"])


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: the n-th retry waits uniformly in [0, min(maximum, initial * 2**(n-1))]."""

    initial: float
    maximum: float

    def delay(self, retry_state: RetryCallState) -> float:
        """tenacity's wait: the jittered delay, but never shorter than what the failure asked for (an open
        breaker says when its next probe is due)."""
        jitter = wait_random_exponential(multiplier=self.initial, max=self.maximum)(retry_state)
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        return max(jitter, failure.retry_after if isinstance(failure, TransientError) else 0.0)


class TransientError(Exception):
    """Worth retrying: the same call may succeed later (service down, timeout, 5xx)."""

    def __init__(self, message: str, *, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StopRequested(Exception):
    """Shutdown was requested while a retry was waiting."""


async def stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds`; True as soon as `stop` is set."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


async def retry_transient(
    call: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff,
    what: str,
    stop: asyncio.Event | None = None,
    on: tuple[type[BaseException], ...] = (TransientError,),
    attempts: int | None = None,
) -> T:
    """Run `call` until it succeeds, retrying the exceptions `on` with `backoff` (tenacity), `attempts` times in
    all or, by default, without end: a transient failure must never turn into a dead letter. The last failure is
    re-raised when attempts run out; other exceptions propagate; StopRequested when `stop` is set while waiting."""

    async def sleep(seconds: float) -> None:
        if stop is None:
            await asyncio.sleep(seconds)
        elif await stopped_within(stop, seconds):
            raise StopRequested(what)

    def before_sleep(state: RetryCallState) -> None:
        RETRIES.labels(what=what).inc()
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, CircuitOpen):
            return  # the breaker logged its opening once; a line per refused call would only be noise
        log.warning(
            "transient failure, retrying",
            extra={
                "what": what,
                "attempt": state.attempt_number,
                "error": str(failure),
                "retryIn": round(state.upcoming_sleep, 3),
            },
        )

    policy = AsyncRetrying(
        retry=retry_if_exception_type(on),
        wait=backoff.delay,
        stop=stop_never if attempts is None else stop_after_attempt(attempts),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )

    async def attempt() -> T:  # a coroutine function: tenacity tells async calls from sync ones by that
        return await call()

    return await policy(attempt)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(TransientError):
    """The breaker refuses calls for now; `retry_after` says when it lets a probe through."""


class CircuitBreaker:
    """Opens after `failure_threshold` consecutive failures; after `reset_s` lets one probe through (half-open);
    the probe's success closes it, its failure opens it again. `on_change` hears every transition (the metric).

    Kept by hand: tenacity retries one call and has no circuit breaker (its state would have to span calls); this
    one is a few lines on one event loop, needs no locking, and reports its transitions to the worker's metrics.
    """

    def __init__(
        self,
        *,
        failure_threshold: int,
        reset_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] = lambda state: None,
    ) -> None:
        self._threshold = failure_threshold
        self._reset_s = reset_s
        self._clock = clock
        self._on_change = on_change
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        on_change(BreakerState.CLOSED)

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
            self._on_change(BreakerState.HALF_OPEN)
            return
        assert self._opened_at is not None
        remaining = max(0.0, self._opened_at + self._reset_s - self._clock())
        raise CircuitOpen(f"circuit open, next probe in {remaining:.2f}s", retry_after=remaining or self._reset_s)

    def record_success(self) -> None:
        if self._opened_at is not None:
            self._on_change(BreakerState.CLOSED)
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
            self._on_change(BreakerState.OPEN)
