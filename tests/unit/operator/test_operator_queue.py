"""Capacity queue: slots per service, priority then fair turns between namespaces then age, caps per
namespace, visible positions, one entry per job key, cancellation."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

from omoai_operator.fairness import FairLine, Ticket
from omoai_operator.namespaces import NamespaceShares, Override
from omoai_operator.queue import Position

from tests.support.capacity import static_queue

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def ticket(key: str, priority: int = 0, age_s: int = 0, namespace: str = "") -> Ticket:
    return Ticket(key=key, priority=priority, created=T0 + dt.timedelta(seconds=age_s), namespace=namespace)


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for ``condition`` (the machine may be loaded: no fixed sleeps for what must happen)."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


def test_tickets_order_by_priority_then_age_then_name() -> None:
    tickets = [ticket("c", 0, 5), ticket("a", 0, 5), ticket("b", 10, 9), ticket("d", -1, 0), ticket("e", 0, 1)]
    assert [t.key for t in sorted(tickets)] == ["b", "e", "a", "c", "d"]


async def test_never_more_than_the_slots_in_flight_and_waiters_served_in_order() -> None:
    observed: list[tuple[str, int, int]] = []
    q = static_queue({"asr": 2}, observer=lambda s, depth, inflight, waited, _ns: observed.append((s, depth, inflight)))
    release = asyncio.Event()
    order: list[str] = []
    peak = 0

    async def job(t: Ticket) -> None:
        nonlocal peak
        async with q.slot("asr", t) as grant:
            assert grant.url == "http://asr"
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
    q = static_queue({"llm": 1})
    hold = asyncio.Event()
    positions: list[int] = []

    async def holder() -> None:
        async with q.slot("llm", ticket("h")):
            await hold.wait()

    async def on_position(p: Position) -> None:
        positions.append(p.position)

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
    q = static_queue({"asr": 1})
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
    async with q.slot("asr", ticket("c")) as grant:
        assert grant.waited_s < 0.1


async def test_with_one_slot_the_grant_order_is_exactly_the_queue_order() -> None:
    q = static_queue({"asr": 1})
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


# -- one entry per key (the defect: a key that waited twice leaked a slot) ---------------------------
async def test_a_key_that_asks_twice_waits_for_its_first_slot_and_leaks_nothing() -> None:
    q = static_queue({"asr": 2})
    first_in = asyncio.Event()
    first_out = asyncio.Event()
    seen: list[int] = []

    async def first() -> None:
        async with q.slot("asr", ticket("ns/job")):
            first_in.set()
            await first_out.wait()

    async def second() -> None:
        async with q.slot("asr", ticket("ns/job")):
            seen.append(q.in_flight("asr"))

    a = asyncio.create_task(first())
    await first_in.wait()
    b = asyncio.create_task(second())
    await asyncio.sleep(0.01)
    assert seen == [] and q.in_flight("asr") == 1 and q.depth("asr") == 0  # not twice in the lane
    first_out.set()
    await asyncio.gather(a, b)
    assert seen == [1]
    assert q.in_flight("asr") == 0 and q.pool("asr").busy_slots() == 0  # nothing leaked
    # Both slots are still there for two other keys at once.
    async with q.slot("asr", ticket("x")), q.slot("asr", ticket("y")):
        assert q.in_flight("asr") == 2


async def test_a_key_waiting_twice_in_line_holds_one_place() -> None:
    q = static_queue({"asr": 1})
    gate = asyncio.Event()

    async def hold(key: str) -> None:
        async with q.slot("asr", ticket(key)):
            await gate.wait()

    tasks = [asyncio.create_task(hold("h"))]
    await asyncio.sleep(0.01)
    tasks += [asyncio.create_task(hold("dup")), asyncio.create_task(hold("dup"))]
    await asyncio.sleep(0.01)
    assert q.waiting("asr") == ["dup"]
    gate.set()
    await asyncio.gather(*tasks)
    assert q.in_flight("asr") == 0 and q.pool("asr").busy_slots() == 0


# -- fairness ---------------------------------------------------------------------------------------------
def test_namespaces_take_turns_within_a_priority_level() -> None:
    line = FairLine()
    for i in range(500):
        line.add(ticket(f"a/{i}", 0, i, "a"))
    served = [line.pop() for _ in range(3)]
    for i in range(5):
        line.add(ticket(f"b/{i}", 0, 1000 + i, "b"))  # later, younger, far fewer
    order = [t.key for t in line.order()]
    assert [t.key for t in served if t] == ["a/0", "a/1", "a/2"]
    assert order[:6] == ["b/0", "a/3", "b/1", "a/4", "b/2", "a/5"]  # the newcomer takes the next turn
    assert [t.key for t in (line.pop(), line.pop(), line.pop())] == order[:3]  # order() is what pop() does


def test_turns_count_grants_made_at_once_while_nobody_else_waited() -> None:
    line = FairLine()
    for i in range(2):  # a's first jobs find free slots: its line empties after each grant
        line.add(ticket(f"a/{i}", 0, i, "a"))
        assert line.pop() is not None
    for i in range(2, 100):
        line.add(ticket(f"a/{i}", 0, i, "a"))
    line.add(ticket("b/0", 0, 500, "b"))
    taken = line.pop()
    assert taken is not None and taken.key == "b/0"


def test_weights_share_the_turns_in_proportion() -> None:
    weights = {"a": 3.0, "b": 1.0}
    line = FairLine(lambda ns: weights[ns])
    for i in range(40):
        line.add(ticket(f"a/{i}", 0, i, "a"))
        line.add(ticket(f"b/{i}", 0, i, "b"))
    first = [line.pop() for _ in range(20)]
    assert sum(1 for t in first if t and t.namespace == "a") == 15


def test_priority_stays_strict_across_namespaces_and_a_capped_namespace_is_skipped() -> None:
    line = FairLine()
    line.add(ticket("a/hi", 5, 9, "a"))
    line.add(ticket("b/lo", 0, 0, "b"))
    line.add(ticket("a/lo", 0, 0, "a"))
    assert [t.key for t in line.order()] == ["a/hi", "a/lo", "b/lo"]
    taken = line.pop(lambda ns: ns != "a")
    assert taken is not None and taken.key == "b/lo"  # a's jobs wait for its cap, not b's
    assert line.pop(lambda ns: False) is None and len(line) == 2


async def test_a_namespace_never_holds_more_than_its_cap_and_waiters_say_so() -> None:
    shares = NamespaceShares(default_cap=2)
    q = static_queue({"asr": 5, "llm": 5}, shares=shares)
    gate = asyncio.Event()
    peak = 0
    told: dict[str, Position] = {}

    async def job(key: str, service: str = "asr") -> None:
        nonlocal peak

        async def on_position(p: Position) -> None:
            told[key] = p

        async with q.slot(service, ticket(key, 0, int(key[2:]), key[0]), on_position):
            peak = max(peak, q.running("a"))
            await gate.wait()

    tasks = [asyncio.create_task(job(f"a/{i}")) for i in range(4)]
    tasks.append(asyncio.create_task(job("a/9", "llm")))
    await until(lambda: {"a/2", "a/3", "a/9"} <= told.keys())
    assert q.running("a") == 2 and q.in_flight("asr") == 2 and q.in_flight("llm") == 0  # across services
    assert told["a/2"].namespace_cap == 2 and told["a/9"].namespace_cap == 2
    b = asyncio.create_task(job("b/0"))
    await until(lambda: q.running("b") == 1)  # other namespaces are not held back by a's cap
    shares.set_overrides({"a": Override(cap=3)})  # raised without a restart
    await until(lambda: q.running("a") == 3)
    gate.set()
    await asyncio.gather(*tasks, b)
    assert peak == 3 and q.running("a") == 0


async def test_a_waiter_far_back_is_not_told_again_before_its_interval() -> None:
    q = static_queue({"asr": 1})
    gate = asyncio.Event()
    reports: list[tuple[str, int]] = []

    async def job(key: str, age: int) -> None:
        async def on_position(p: Position) -> None:
            reports.append((key, p.position))

        async with q.slot("asr", ticket(key, 0, age), on_position, min_interval_s=30.0):
            await gate.wait()

    tasks = [asyncio.create_task(job("h", 0))]
    await asyncio.sleep(0.01)
    tasks += [asyncio.create_task(job(f"w{i:03d}", 1 + i)) for i in range(200)]
    await until(lambda: len(reports) == 200)  # each told its first position once
    jumper = asyncio.create_task(q.slot("asr", ticket("vip", 9)).__aenter__())  # everyone moves back one
    await until(lambda: q.depth("asr") == 201)
    await asyncio.sleep(0.1)
    assert len(reports) == 200  # and nobody writes again before its interval
    jumper.cancel()
    gate.set()
    await asyncio.gather(*tasks, jumper, return_exceptions=True)
