"""Capacity: a concurrency limit per service and a queue ordered by priority, then age.

One operator replica acts at a time (kopf peering), so the queue lives in memory and is rebuilt
from the jobs themselves after a restart: every unfinished job asks for its slot again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any


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


@dataclass
class _Waiter:
    ticket: Ticket
    granted: asyncio.Future[None]


class _Lane:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.holders: set[str] = set()
        self.waiters: list[_Waiter] = []
        self.changed = asyncio.Event()


PositionCallback = Callable[[int], Awaitable[None]]


class CapacityQueue:
    """``async with queue.slot("asr", ticket, on_position=cb):`` holds one of the service's slots.

    Waiters are served best ticket first; ``on_position`` is awaited with the 1-based queue position
    each time it changes while waiting (never called when a slot is free at once). Cancelling a
    waiter removes it from the line; a slot granted to a cancelled waiter is passed on.
    """

    def __init__(self, limits: Mapping[str, int], observer: QueueObserver | None = None) -> None:
        for service, n in limits.items():
            if n < 1:
                raise ValueError(f"concurrency limit of {service} must be at least 1, got {n}")
        self._lanes = {s: _Lane(n) for s, n in limits.items()}
        self._observer = observer

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
        self, service: str, ticket: Ticket, on_position: PositionCallback | None = None
    ) -> AsyncIterator[float]:
        """Yields the seconds waited."""
        lane = self._lanes[service]
        t0 = time.monotonic()
        if len(lane.holders) < lane.limit and not lane.waiters:
            lane.holders.add(ticket.key)
        else:
            await self._wait(lane, service, ticket, on_position)
        waited = time.monotonic() - t0
        self._observe(service, waited)
        try:
            yield waited
        finally:
            lane.holders.discard(ticket.key)
            self._grant(lane)
            self._observe(service, None)

    async def _wait(self, lane: _Lane, service: str, ticket: Ticket, on_position: PositionCallback | None) -> None:
        waiter = _Waiter(ticket, asyncio.get_running_loop().create_future())
        lane.waiters.append(waiter)
        lane.waiters.sort(key=lambda w: w.ticket)
        self._notify(lane)
        self._observe(service, None)
        last: int | None = None
        try:
            while not waiter.granted.done():
                changed = lane.changed
                pos = self.position(service, ticket.key)
                if on_position is not None and pos is not None and pos != last:
                    last = pos
                    await on_position(pos)
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
                lane.holders.discard(ticket.key)  # granted while being cancelled: pass it on
                self._grant(lane)
            self._observe(service, None)
            raise

    def _grant(self, lane: _Lane) -> None:
        moved = False
        while lane.waiters and len(lane.holders) < lane.limit:
            w = lane.waiters.pop(0)
            lane.holders.add(w.ticket.key)
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
