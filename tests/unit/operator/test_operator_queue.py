"""Capacity queue: limits per service, priority then age ordering, visible positions, cancellation."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from omoai_operator.queue import CapacityQueue, Ticket

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def ticket(key: str, priority: int = 0, age_s: int = 0) -> Ticket:
    return Ticket(key=key, priority=priority, created=T0 + dt.timedelta(seconds=age_s))


def test_tickets_order_by_priority_then_age_then_name() -> None:
    tickets = [ticket("c", 0, 5), ticket("a", 0, 5), ticket("b", 10, 9), ticket("d", -1, 0), ticket("e", 0, 1)]
    assert [t.key for t in sorted(tickets)] == ["b", "e", "a", "c", "d"]


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CapacityQueue({"asr": 0})


async def test_never_more_than_the_limit_in_flight_and_waiters_served_in_order() -> None:
    observed: list[tuple[str, int, int]] = []
    q = CapacityQueue({"asr": 2}, observer=lambda s, depth, inflight, waited: observed.append((s, depth, inflight)))
    release = asyncio.Event()
    order: list[str] = []
    peak = 0

    async def job(t: Ticket) -> None:
        nonlocal peak
        async with q.slot("asr", t):
            order.append(t.key)
            peak = max(peak, q.in_flight("asr"))
            await release.wait()

    first = [asyncio.create_task(job(ticket(k))) for k in ("x", "y")]
    await asyncio.sleep(0.01)
    waiting = [ticket("low", -5, 0), ticket("old", 0, 1), ticket("new", 0, 9), ticket("vip", 100, 50)]
    rest = [asyncio.create_task(job(t)) for t in waiting]
    await asyncio.sleep(0.01)
    assert q.waiting("asr") == ["vip", "old", "new", "low"]
    assert q.position("asr", "new") == 3 and q.depth("asr") == 4
    release.set()
    await asyncio.gather(*first, *rest)
    # Two slots free up together, so two grants race to run first: compare in pairs.
    assert order[:2] == ["x", "y"] and set(order[2:4]) == {"vip", "old"} and set(order[4:]) == {"new", "low"}
    assert peak == 2 and q.in_flight("asr") == 0 and q.depth("asr") == 0
    assert max(d for _, d, _ in observed) == 4 and max(i for _, _, i in observed) == 2


async def test_positions_are_reported_as_they_change() -> None:
    q = CapacityQueue({"llm": 1})
    hold = asyncio.Event()
    positions: list[int] = []

    async def holder() -> None:
        async with q.slot("llm", ticket("h")):
            await hold.wait()

    async def on_position(p: int) -> None:
        positions.append(p)

    async def waiter() -> None:
        async with q.slot("llm", ticket("w", 0, 10), on_position):
            pass

    h = asyncio.create_task(holder())
    await asyncio.sleep(0)
    w = asyncio.create_task(waiter())
    await asyncio.sleep(0.01)
    jumper = asyncio.create_task(q.slot("llm", ticket("vip", 9)).__aenter__())  # goes ahead of w
    await asyncio.sleep(0.01)
    assert positions == [1, 2]
    jumper.cancel()
    await asyncio.gather(jumper, return_exceptions=True)
    await asyncio.sleep(0.01)
    assert positions == [1, 2, 1]  # the cancelled waiter left the line
    hold.set()
    await asyncio.gather(h, w)


async def test_a_cancelled_waiter_never_holds_a_slot() -> None:
    q = CapacityQueue({"asr": 1})
    gate = asyncio.Event()

    async def holder() -> None:
        async with q.slot("asr", ticket("a")):
            await gate.wait()

    h = asyncio.create_task(holder())
    await asyncio.sleep(0)

    async def wait_then_work() -> None:
        async with q.slot("asr", ticket("b")):
            await asyncio.sleep(10)

    b = asyncio.create_task(wait_then_work())
    await asyncio.sleep(0.01)
    b.cancel()
    await asyncio.gather(b, return_exceptions=True)
    gate.set()
    await h
    assert q.in_flight("asr") == 0 and q.depth("asr") == 0
    async with q.slot("asr", ticket("c")) as waited:
        assert waited < 0.1


async def test_with_one_slot_the_grant_order_is_exactly_the_queue_order() -> None:
    q = CapacityQueue({"asr": 1})
    order: list[str] = []
    gate = asyncio.Event()

    async def job(t: Ticket) -> None:
        async with q.slot("asr", t):
            order.append(t.key)
            await gate.wait()

    tasks = [asyncio.create_task(job(ticket("first")))]
    await asyncio.sleep(0.01)
    tasks += [
        asyncio.create_task(job(t))
        for t in (ticket("p0-late", 0, 30), ticket("p5", 5, 40), ticket("p0-early", 0, 10), ticket("neg", -1, 0))
    ]
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(*tasks)
    assert order == ["first", "p5", "p0-early", "p0-late", "neg"]
