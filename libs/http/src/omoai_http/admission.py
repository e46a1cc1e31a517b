"""Bounded work per replica: at most ``max_concurrency`` requests run and ``max_queue`` wait; the
next one is refused at once with 429 and ``Retry-After`` instead of piling up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from omoai_core.errors import OverloadedError
from prometheus_client import CollectorRegistry, Gauge


class Admission:
    def __init__(self, max_concurrency: int, max_queue: int, *, registry: CollectorRegistry, service: str) -> None:
        self._sem = asyncio.Semaphore(max_concurrency)
        self._max_queue = max_queue
        self._waiting = 0
        self.in_flight = Gauge(f"omoai_{service}_requests_in_flight", "Requests being worked on.", registry=registry)
        self.queue_depth = Gauge(f"omoai_{service}_queue_depth", "Requests waiting for a worker.", registry=registry)

    @property
    def waiting(self) -> int:
        return self._waiting

    @contextlib.asynccontextmanager
    async def slot(self, retry_after_s: float = 1.0) -> AsyncIterator[None]:
        if self._sem.locked() and self._waiting >= self._max_queue:
            raise OverloadedError(
                f"the server is busy ({self._waiting} requests queued); retry later",
                retry_after_s=retry_after_s,
            )
        self._waiting += 1
        self.queue_depth.set(self._waiting)
        try:
            await self._sem.acquire()
        finally:
            self._waiting -= 1
            self.queue_depth.set(self._waiting)
        self.in_flight.inc()
        try:
            yield
        finally:
            self.in_flight.dec()
            self._sem.release()
