from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from worker.amqp import Delivery
from worker.consumer import Inbox

pytestmark = pytest.mark.unit


def msg(n: int) -> Delivery:
    return cast(Delivery, n)  # the inbox only stores and hands out what it was given


async def test_a_full_batch_goes_out_at_once_and_the_rest_waits() -> None:
    inbox = Inbox(size=3, linger_s=10)
    for n in range(5):
        await inbox.put(msg(n))
    assert await asyncio.wait_for(inbox.take(), timeout=1) == [0, 1, 2]


async def test_a_partial_batch_goes_out_after_the_linger() -> None:
    inbox = Inbox(size=100, linger_s=0.01)
    await inbox.put(msg(1))
    await inbox.put(msg(2))
    assert await asyncio.wait_for(inbox.take(), timeout=1) == [1, 2]


async def test_a_batch_fills_while_lingering() -> None:
    inbox = Inbox(size=3, linger_s=10)
    await inbox.put(msg(1))

    async def later() -> None:
        for n in (2, 3, 4):
            await inbox.put(msg(n))

    taken, _ = await asyncio.wait_for(asyncio.gather(inbox.take(), later()), timeout=1)
    assert taken == [1, 2, 3]
    await inbox.put(msg(5))
    await inbox.put(msg(6))
    assert await asyncio.wait_for(inbox.take(), timeout=1) == [4, 5, 6]


async def test_idle_inbox_returns_empty() -> None:
    inbox: Any = Inbox(size=3, linger_s=0)
    assert await asyncio.wait_for(inbox.take(), timeout=5) == []
