"""Capacity: one line per service, served by :class:`~omoai_operator.fairness.FairLine` (priority,
then namespaces in weighted turns, then age), on the slots of the service's
:class:`~omoai_operator.placement.EndpointPool` (its ready endpoints, or the Service URL with the
configured concurrency). Every grant is a placement on the least-loaded endpoint with an open slot,
handed to the holder as its :class:`~omoai_operator.placement.Grant`; capacity that appears is
granted at once. A namespace at its cap (:class:`~omoai_operator.namespaces.NamespaceShares`) is
skipped until one of its stages ends.

A job key is in a service's line or holds its slot at most once: a second ``slot()`` for the same
key waits until the first has left (as work queues dedupe keys), so no slot can leak.

Positions are computed once per change for the whole line (O(n log namespaces)), and only the
waiters whose position changed *and* whose next report is due are woken; the rest read their
newest position when their own interval ends.

One operator replica acts at a time (kopf peering), so the queue lives in memory and is rebuilt
from the jobs themselves after a restart: every unfinished job asks for its slot again.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from omoai_operator.fairness import FairLine, Ticket
from omoai_operator.namespaces import NamespaceShares
from omoai_operator.placement import EndpointPool, Grant

#: Waiters this close to the front are told every move at the base interval; behind them, the
#: interval grows in proportion to the position (position 40 hears every 10 intervals).
EXACT_POSITIONS = 4


@dataclass(frozen=True)
class Position:
    """What a waiting stage is told: its place in line, the service's ready endpoints (0: waiting
    for a replica to start), and, while its namespace is at its cap, that cap."""

    position: int
    ready_endpoints: int
    namespace_cap: int | None = None


PositionCallback = Callable[[Position], Awaitable[None]]


@dataclass
class _Waiter:
    ticket: Ticket
    granted: asyncio.Future[Grant]
    min_interval_s: float
    reports: bool
    state: Position | None = None  # newest, set by the queue
    reported: Position | None = None  # last told
    called_at: float = -math.inf
    sleep_until: float | None = None  # None: asleep until woken
    nudge: asyncio.Event = field(default_factory=asyncio.Event)

    def due(self, state: Position) -> float:
        return self.called_at + self.min_interval_s * max(1.0, state.position / EXACT_POSITIONS)


@dataclass
class _Holder:
    namespace: str
    grant: Grant


class _Lane:
    """One service: its pool, its line, who waits and who holds a slot."""

    def __init__(self, service: str, pool: EndpointPool, line: FairLine) -> None:
        self.service = service
        self.pool = pool
        self.line = line
        self.waiters: dict[str, _Waiter] = {}
        self.holders: dict[str, _Holder] = {}
        self.leaving: dict[str, asyncio.Event] = {}  # key -> set when it leaves (a duplicate waits on it)
        self.waiting_by_ns: Counter[str] = Counter()
        self.holding_by_ns: Counter[str] = Counter()
        self.refresh_pending = False

    def has(self, key: str) -> bool:
        return key in self.waiters or key in self.holders

    def left(self, key: str) -> None:
        ev = self.leaving.pop(key, None)
        if ev is not None:
            ev.set()


class CapacityQueue:
    """``async with queue.slot("asr", ticket, on_position=cb) as grant:`` holds one of the service's
    slots; the stage's calls go to ``grant.url``.

    ``on_position`` is awaited with the :class:`Position` each time it changes while waiting (never
    when a slot is free at once). Cancelling a waiter removes it from the line; a slot granted to a
    cancelled waiter is passed on.
    """

    def __init__(
        self,
        pools: Mapping[str, EndpointPool],
        *,
        shares: NamespaceShares | None = None,
        observer: QueueObserver | None = None,
    ) -> None:
        self.shares = shares or NamespaceShares()
        self._lanes = {s: _Lane(s, pool, FairLine(self.shares.weight)) for s, pool in pools.items()}
        self._observer = observer
        self._running: Counter[str] = Counter()  # namespace -> slots held, all services
        for service, pool in pools.items():
            pool.listen(functools.partial(self._capacity_changed, service))
            pool.count_waiting_with(functools.partial(self.depth, service))
        self.shares.listen(self._shares_changed)

    # -- what is known -----------------------------------------------------------------------------
    def pool(self, service: str) -> EndpointPool:
        return self._lanes[service].pool

    def ready_endpoints(self, service: str) -> int:
        return self._lanes[service].pool.ready_count()

    def in_flight(self, service: str) -> int:
        return len(self._lanes[service].holders)

    def depth(self, service: str) -> int:
        return len(self._lanes[service].waiters)

    def running(self, namespace: str) -> int:
        """Slots the namespace's stages hold, all services together (what its cap bounds)."""
        return self._running[namespace]

    def waiting(self, service: str) -> list[str]:
        """The waiting keys in the order they would be served (O(n log namespaces))."""
        return [t.key for t in self._lanes[service].line.order()]

    def position(self, service: str, key: str) -> int | None:
        for i, k in enumerate(self.waiting(service), start=1):
            if k == key:
                return i
        return None

    # -- holding a slot ------------------------------------------------------------------------------
    @asynccontextmanager
    async def slot(
        self, service: str, ticket: Ticket, on_position: PositionCallback | None = None, min_interval_s: float = 0.0
    ) -> AsyncIterator[Grant]:
        """Yields the grant (with the seconds waited). ``on_position`` is called at most once per
        ``min_interval_s`` (then with the position current at the end of the interval), less often
        farther back in line (the interval grows with the position past :data:`EXACT_POSITIONS`, so
        a line of any length costs a bounded number of status writes per second); a grant never
        waits for it."""
        lane = self._lanes[service]
        while lane.has(ticket.key):  # the same key already waits or holds: wait until it has left
            await lane.leaving.setdefault(ticket.key, asyncio.Event()).wait()
        t0 = time.monotonic()
        grant = await self._wait(lane, ticket, on_position, min_interval_s)
        grant = replace(grant, waited_s=time.monotonic() - t0)
        lane.holders[ticket.key].grant = grant
        self._observe(lane, grant.waited_s)
        try:
            yield grant
        finally:
            self._give_back(lane, ticket.key)

    async def _wait(
        self, lane: _Lane, ticket: Ticket, on_position: PositionCallback | None, min_interval_s: float
    ) -> Grant:
        loop = asyncio.get_running_loop()
        w = _Waiter(ticket, loop.create_future(), min_interval_s, on_position is not None)
        lane.waiters[ticket.key] = w
        lane.waiting_by_ns[ticket.namespace] += 1
        lane.line.add(ticket)
        self._grant(lane)
        if w.granted.done():
            return w.granted.result()  # a slot was open: no position to tell
        self._refresh_soon(lane)
        self._observe(lane, None)
        try:
            while not w.granted.done():
                state = w.state
                wake: float | None = None
                if on_position is not None and state is not None and state != w.reported:
                    due = w.due(state)
                    if due <= loop.time():
                        w.reported, w.called_at = state, loop.time()
                        await on_position(state)
                        continue  # the line may have moved while the callback ran
                    wake = due - loop.time()
                w.sleep_until = None if wake is None else loop.time() + wake
                w.nudge.clear()
                nudged = asyncio.ensure_future(w.nudge.wait())
                either: set[asyncio.Future[Any]] = {w.granted, nudged}
                try:
                    await asyncio.wait(either, timeout=wake, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    nudged.cancel()
            return w.granted.result()
        except BaseException:
            if lane.waiters.get(ticket.key) is w:
                self._drop_waiter(lane, w)
                lane.left(ticket.key)
                self._refresh_soon(lane)
                self._observe(lane, None)
            elif w.granted.done() and not w.granted.cancelled():
                self._give_back(lane, ticket.key)  # granted while being cancelled: pass it on
            raise

    def _drop_waiter(self, lane: _Lane, w: _Waiter, *, in_line: bool = True) -> None:
        del lane.waiters[w.ticket.key]
        if in_line:
            lane.line.remove(w.ticket)
        ns = w.ticket.namespace
        lane.waiting_by_ns[ns] -= 1
        if lane.waiting_by_ns[ns] <= 0:
            del lane.waiting_by_ns[ns]

    def _under_cap(self, namespace: str) -> bool:
        cap = self.shares.cap(namespace)
        return cap is None or self._running[namespace] < cap

    def _grant(self, lane: _Lane) -> bool:
        moved = False
        while lane.waiters and lane.pool.open_slots() > 0:
            ticket = lane.line.pop(self._under_cap)
            if ticket is None:
                break  # everyone waiting is held back by a cap
            w = lane.waiters[ticket.key]
            self._drop_waiter(lane, w, in_line=False)
            endpoint = lane.pool.acquire()
            assert endpoint is not None  # an open slot was there
            ns = ticket.namespace
            lane.holders[ticket.key] = _Holder(ns, Grant(lane.service, endpoint.url, lane.pool))
            lane.holding_by_ns[ns] += 1
            self._running[ns] += 1
            if not w.granted.done():
                w.granted.set_result(lane.holders[ticket.key].grant)
            moved = True
            if self.shares.cap(ns) is not None:
                self._refresh_all()  # its waiters for other services may be at its cap now
        if moved:
            self._refresh_soon(lane)
        return moved

    def _refresh_all(self) -> None:
        for lane in self._lanes.values():
            self._refresh_soon(lane)

    def _give_back(self, lane: _Lane, key: str) -> None:
        holder = lane.holders.pop(key, None)
        if holder is None:
            return
        ns = holder.namespace
        lane.holding_by_ns[ns] -= 1
        if lane.holding_by_ns[ns] <= 0:
            del lane.holding_by_ns[ns]
        self._running[ns] -= 1
        if self._running[ns] <= 0:
            del self._running[ns]
        lane.left(key)
        capped = self.shares.cap(ns) is not None
        holder.grant.pool.release(holder.grant.url)  # the pool's listener grants this lane
        if capped:
            self._grant_all()  # the namespace may take a slot of another service now
            self._refresh_all()  # and its waiters there are no longer at its cap
        self._observe(lane, None)

    def _grant_all(self) -> None:
        for lane in self._lanes.values():
            if self._grant(lane):
                self._observe(lane, None)

    def _capacity_changed(self, service: str) -> None:
        lane = self._lanes[service]
        self._grant(lane)
        self._refresh_soon(lane)  # the ready endpoints are part of what waiters are told
        self._observe(lane, None)

    def _shares_changed(self) -> None:
        self._grant_all()
        self._refresh_all()

    # -- positions -------------------------------------------------------------------------------------
    def _refresh_soon(self, lane: _Lane) -> None:
        # Every change of one loop iteration is folded into one pass over the line.
        if lane.refresh_pending or not lane.waiters:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        lane.refresh_pending = True
        loop.call_soon(self._refresh, lane)

    def _refresh(self, lane: _Lane) -> None:
        lane.refresh_pending = False
        loop = asyncio.get_running_loop()
        now = loop.time()
        ready = lane.pool.ready_count()
        for i, ticket in enumerate(lane.line.order(), start=1):
            w = lane.waiters[ticket.key]
            ns = ticket.namespace
            cap = self.shares.cap(ns)
            state = Position(i, ready, cap if cap is not None and self._running[ns] >= cap else None)
            if state == w.state:
                continue
            w.state = state
            if not w.reports:
                continue
            # Wake a waiter only when its report is due; one that is not due yet gets one timer
            # (a waiter that already wakes by itself needs none): as the line moves, a waiter far
            # back costs one comparison per change, no wake-up.
            due = w.due(state)
            if due <= now:
                w.nudge.set()
            elif w.sleep_until is None:
                w.sleep_until = due
                loop.call_at(due, w.nudge.set)

    def _observe(self, lane: _Lane, waited: float | None) -> None:
        if self._observer is not None:
            by_namespace = {
                ns: (lane.waiting_by_ns.get(ns, 0), lane.holding_by_ns.get(ns, 0))
                for ns in lane.waiting_by_ns.keys() | lane.holding_by_ns.keys()
            }
            self._observer(lane.service, len(lane.waiters), len(lane.holders), waited, by_namespace)


#: ``(service, depth, in_flight, waited_s or None, {namespace: (waiting, holding)})`` after every
#: queue change (for metrics).
QueueObserver = Callable[[str, int, int, float | None, Mapping[str, tuple[int, int]]], None]
