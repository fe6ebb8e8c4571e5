from __future__ import annotations

import asyncio
import random

import pytest
from prometheus_client import REGISTRY
from tenacity import AsyncRetrying, RetryCallState

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


def retry_state(attempt: int, failure: BaseException | None = None) -> RetryCallState:
    """tenacity's view of a call after its `attempt`-th failure."""
    state = RetryCallState(retry_object=AsyncRetrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    if failure is not None:
        state.set_exception((type(failure), failure, None))
    return state


def test_backoff_ceiling_doubles_then_caps_with_full_jitter_below_it() -> None:
    backoff = Backoff(initial=0.1, maximum=2.0)
    random.seed(1)
    for attempt, ceiling in zip(range(1, 8), [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0], strict=True):
        delays = [backoff.delay(retry_state(attempt)) for _ in range(300)]
        assert all(0 <= d <= ceiling for d in delays)
        # full jitter spreads over the whole range
        assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling
    assert max(backoff.delay(retry_state(10_000)) for _ in range(50)) <= 2.0


def test_backoff_waits_at_least_what_the_failure_asks_for() -> None:
    backoff = Backoff(initial=0.001, maximum=0.002)
    assert backoff.delay(retry_state(1, CircuitOpen("open", retry_after=1.5))) == 1.5
    assert backoff.delay(retry_state(1, TransientError("down"))) <= 0.002


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


async def test_a_bounded_retry_gives_up_with_the_last_failure_and_counts_its_retries() -> None:
    attempts = 0

    async def malformed() -> None:
        nonlocal attempts
        attempts += 1
        raise ValueError(f"answer {attempts} is not a prediction")

    retries = lambda: REGISTRY.get_sample_value("osml_retries_total", {"what": "bounded"}) or 0.0  # noqa: E731
    before = retries()
    with pytest.raises(ValueError, match="answer 3"):
        await retry_transient(
            malformed, backoff=Backoff(initial=0.001, maximum=0.002), what="bounded", on=(ValueError,), attempts=3
        )
    assert attempts == 3
    assert retries() - before == 2


def test_breaker_reports_each_transition() -> None:
    clock = FakeClock()
    seen: list[BreakerState] = []
    breaker = CircuitBreaker(failure_threshold=1, reset_s=5, clock=clock, on_change=seen.append)
    breaker.before_call()
    breaker.record_failure()
    clock.now += 5
    breaker.before_call()
    breaker.record_success()
    assert seen == [BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


async def test_retry_transient_awaits_what_a_plain_lambda_returns() -> None:
    async def answer() -> str:
        return "ok"

    assert await retry_transient(lambda: answer(), backoff=Backoff(initial=0.001, maximum=0.002), what="t") == "ok"
