from __future__ import annotations

import asyncio
import random

import pytest

from worker.resilience import (
    Backoff,
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    StopRequested,
    TransientError,
    retry_transient,
)

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_backoff_ceiling_doubles_then_caps() -> None:
    backoff = Backoff(initial=0.1, maximum=2.0)
    assert [backoff.ceiling(n) for n in range(7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    assert backoff.ceiling(10_000) == 2.0


def test_backoff_jitter_stays_within_the_ceiling_and_varies() -> None:
    backoff = Backoff(initial=0.1, maximum=2.0, rng=random.Random(1))
    delays = [backoff.delay(3) for _ in range(200)]
    assert all(0 <= d <= 0.8 for d in delays)
    assert len({round(d, 6) for d in delays}) > 150
    assert max(delays) > 0.6 and min(delays) < 0.2  # full jitter spreads over the whole range


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, reset_s=5, clock=clock)
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    breaker.before_call()
    breaker.record_success()  # a success resets the count
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as refused:
        breaker.before_call()
    assert refused.value.retry_after == pytest.approx(5)


def test_half_open_lets_one_probe_through_and_its_outcome_decides() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_s=5, clock=clock)
    breaker.before_call()
    breaker.record_failure()
    clock.now += 4.9
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    clock.now += 0.2
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call()  # the probe
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # only one at a time
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN  # failed probe: open for another reset period
    clock.now += 5
    breaker.before_call()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call()


async def test_retry_transient_retries_until_success_and_passes_other_errors() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise TransientError("down")
        return "ok"

    assert await retry_transient(flaky, backoff=Backoff(initial=0.001, maximum=0.002), what="t") == "ok"
    assert calls == 4

    async def broken() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        await retry_transient(broken, backoff=Backoff(initial=0.001, maximum=0.002), what="t")


async def test_retry_transient_gives_up_only_when_stop_is_requested() -> None:
    stop = asyncio.Event()
    attempts = 0

    async def always_down() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 5:
            stop.set()
        raise TransientError("down")

    with pytest.raises(StopRequested):
        await retry_transient(always_down, backoff=Backoff(initial=0.001, maximum=0.002), what="t", stop=stop)
    assert attempts == 5
