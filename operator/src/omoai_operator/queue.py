"""Capacity: slots per service and a queue ordered by priority, then age.

A service's slots are a fixed concurrency limit, or those of its ready endpoints (an
:class:`~omoai_operator.endpoints.EndpointPool` that follows the replicas): then every grant is
also a placement on the least-loaded endpoint with a free slot, which the holder's service calls
go to (:data:`~omoai_operator.endpoints.ROUTE`), and capacity that appears is granted at once.

One operator replica acts at a time (kopf peering), so the queue lives in memory and is rebuilt
from the jobs themselves after a restart: every unfinished job asks for its slot again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import itertools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from omoai_operator.endpoints import ROUTE, Endpoint, EndpointPool, Placement


@dataclass(frozen=True, order=True)
class Ticket:
    """A place in line: higher ``priority`` first, then the older ``created``, then the name."""

    sort_key: tuple[int, float, str, int] = field(init=False, repr=False)
    key: str = field(compare=False)
    priority: int = field(compare=False, default=0)
    created: dt.datetime | None = field(compare=False, default=None)

    def __post_init__(self) -> None:
        created = self.created.timestamp() if self.created is not None else time.time()
        object.__setattr__(self, "sort_key", (-self.priority, created, self.key, next(_SEQ)))


_SEQ = itertools.count()

#: Waiters this close to the front are told every move at the base interval; behind them, the
#: interval grows in proportion to the position (position 40 hears every 10 intervals).
EXACT_POSITIONS = 4


@dataclass
class _Waiter:
    ticket: Ticket
    granted: asyncio.Future[None]


class _Lane:
    """One service's slots: a fixed ``limit``, or the free slots of an :class:`EndpointPool`."""

    def __init__(self, limit: int, pool: EndpointPool | None = None) -> None:
        self.limit = limit
        self.pool = pool
        self.holders: dict[str, Endpoint | None] = {}  # job key -> the endpoint its stage was placed on
        self.waiters: list[_Waiter] = []
        self.changed = asyncio.Event()

    def has_room(self) -> bool:
        if self.pool is not None:
            return self.pool.free() > 0
        return len(self.holders) < self.limit

    def take(self, key: str) -> None:
        self.holders[key] = self.pool.acquire() if self.pool is not None else None

    def give_back(self, key: str) -> None:
        ep = self.holders.pop(key, None)
        if ep is not None and self.pool is not None:
            self.pool.release(ep.url)


PositionCallback = Callable[[int], Awaitable[None]]


class CapacityQueue:
    """``async with queue.slot("asr", ticket, on_position=cb):`` holds one of the service's slots.

    Waiters are served best ticket first; ``on_position`` is awaited with the 1-based queue position
    each time it changes while waiting (never called when a slot is free at once). Cancelling a
    waiter removes it from the line; a slot granted to a cancelled waiter is passed on.
    """

    def __init__(
        self,
        limits: Mapping[str, int],
        observer: QueueObserver | None = None,
        pools: Mapping[str, EndpointPool] | None = None,
    ) -> None:
        for service, n in limits.items():
            if n < 1:
                raise ValueError(f"concurrency limit of {service} must be at least 1, got {n}")
        pools = pools or {}
        self._lanes = {s: _Lane(n, pools.get(s)) for s, n in limits.items()}
        self._observer = observer
        for service, pool in pools.items():
            pool.listen(functools.partial(self._capacity_changed, service))
            pool.count_waiting_with(functools.partial(self.depth, service))

    def pool(self, service: str) -> EndpointPool | None:
        return self._lanes[service].pool

    def ready_endpoints(self, service: str) -> int | None:
        """Ready endpoints of the service; None where its capacity is a fixed limit."""
        pool = self._lanes[service].pool
        return None if pool is None else pool.ready_count()

    def _capacity_changed(self, service: str) -> None:
        lane = self._lanes[service]
        self._grant(lane)
        self._notify(lane)  # waiters recompute what they tell the user (e.g. no replica ready)
        self._observe(service, None)

    def in_flight(self, service: str) -> int:
        return len(self._lanes[service].holders)

    def depth(self, service: str) -> int:
        return len(self._lanes[service].waiters)

    def position(self, service: str, key: str) -> int | None:
        for i, w in enumerate(self._lanes[service].waiters, start=1):
            if w.ticket.key == key:
                return i
        return None

    def waiting(self, service: str) -> list[str]:
        return [w.ticket.key for w in self._lanes[service].waiters]

    @asynccontextmanager
    async def slot(
        self, service: str, ticket: Ticket, on_position: PositionCallback | None = None, min_interval_s: float = 0.0
    ) -> AsyncIterator[float]:
        """Yields the seconds waited. ``on_position`` is called at most once per ``min_interval_s``
        (then with the position current at the end of the interval), less often farther back in
        line (the interval grows with the position past :data:`EXACT_POSITIONS`, so a line of any
        length costs a bounded number of status writes per second); a grant never waits for it."""
        lane = self._lanes[service]
        t0 = time.monotonic()
        if lane.has_room() and not lane.waiters:
            lane.take(ticket.key)
        else:
            await self._wait(lane, service, ticket, on_position, min_interval_s)
        waited = time.monotonic() - t0
        ep = lane.holders.get(ticket.key)
        route = ROUTE.set(Placement(service, ep.url, lane.pool) if ep is not None and lane.pool else None)
        self._observe(service, waited)
        try:
            yield waited
        finally:
            lane.give_back(ticket.key)
            try:
                ROUTE.reset(route)
            except ValueError:  # left from another context than it was entered in
                ROUTE.set(None)
            self._grant(lane)
            self._observe(service, None)

    async def _wait(
        self, lane: _Lane, service: str, ticket: Ticket, on_position: PositionCallback | None, min_interval_s: float
    ) -> None:
        waiter = _Waiter(ticket, asyncio.get_running_loop().create_future())
        lane.waiters.append(waiter)
        lane.waiters.sort(key=lambda w: w.ticket)
        self._notify(lane)
        self._observe(service, None)
        last: tuple[int, bool] | None = None
        called_at = -math.inf
        try:
            while not waiter.granted.done():
                changed = lane.changed
                pos = self.position(service, ticket.key)
                state = (pos, self.ready_endpoints(service) == 0) if pos is not None else None
                if on_position is not None and state is not None and state != last:
                    interval = min_interval_s * max(1.0, state[0] / EXACT_POSITIONS)
                    early = called_at + interval - time.monotonic()
                    if early > 0:
                        # Too soon to tell again: wait out the interval, unless the slot comes first.
                        await asyncio.wait({waiter.granted}, timeout=early)
                        continue
                    last = state
                    called_at = time.monotonic()
                    await on_position(state[0])
                    continue  # the line may have moved while the callback ran
                if waiter.granted.done():
                    break
                wait_changed = asyncio.ensure_future(changed.wait())
                either: set[asyncio.Future[Any]] = {waiter.granted, wait_changed}
                try:
                    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    wait_changed.cancel()
        except BaseException:
            if waiter in lane.waiters:
                lane.waiters.remove(waiter)
                self._notify(lane)
            elif waiter.granted.done():
                lane.give_back(ticket.key)  # granted while being cancelled: pass it on
                self._grant(lane)
            self._observe(service, None)
            raise

    def _grant(self, lane: _Lane) -> None:
        moved = False
        while lane.waiters and lane.has_room():
            w = lane.waiters.pop(0)
            lane.take(w.ticket.key)
            if not w.granted.done():
                w.granted.set_result(None)
            moved = True
        if moved:
            self._notify(lane)

    @staticmethod
    def _notify(lane: _Lane) -> None:
        # Wake every waiter once to recompute its position, then arm a fresh event.
        lane.changed.set()
        lane.changed = asyncio.Event()

    def _observe(self, service: str, waited: float | None) -> None:
        if self._observer is not None:
            self._observer(service, self.depth(service), self.in_flight(service), waited)


#: ``(service, depth, in_flight, waited_s or None)`` after every queue change (for metrics).
QueueObserver = Callable[[str, int, int, float | None], None]
