"""Placement: the ready endpoints of one service, the slots each takes at once, and which one a
stage goes to.

A stage goes to the least-loaded endpoint with a free slot; an endpoint that appears adds its slots
at once, one that goes away (or stops being ready) takes its slots out at once while the stages it
runs finish or fail there (and are retried elsewhere by the job's backoff). An endpoint that refuses
connections is set aside for a while even before its slice says so. Without discovery the pool holds
one endpoint, the Service URL, with the configured concurrency (:func:`use_service_url`).

The endpoint a stage was placed on is handed to the stage as its :class:`Grant`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

#: Where a pool's endpoints come from: the Service's EndpointSlices, the Service URL, or not yet known.
Origin = Literal["endpointslices", "static", "none"]


@dataclass(frozen=True, order=True)
class EndpointAddress:
    """One replica as discovery sees it: where to call it, and the pod behind it (for logs)."""

    url: str
    pod: str = ""


@dataclass
class Endpoint:
    """One replica: ``slots`` stages at once, ``busy`` of them running now."""

    url: str
    slots: int
    pod: str = ""
    busy: int = 0
    ready: bool = True  # False once it left the slices (its running stages still count in ``busy``)
    ejected_until: float = 0.0  # monotonic time; refused connections set it
    placed: int = 0  # stages placed here since it appeared

    def open_slots(self, now: float) -> int:
        if not self.ready or now < self.ejected_until:
            return 0
        return max(0, self.slots - self.busy)


@dataclass(frozen=True)
class Grant:
    """One slot of a service, held by one stage: the endpoint its calls go to.

    ``unreachable()`` says the endpoint refused the connection (no new stages there for a while)."""

    service: str
    url: str
    pool: EndpointPool
    waited_s: float = 0.0

    def unreachable(self) -> None:
        self.pool.unreachable(self.url)


ChangeListener = Callable[[], None]


class EndpointPool:
    """The endpoints of one service and the slots in use on each.

    ``acquire()`` picks the least-loaded endpoint with an open slot (lowest share of its slots in
    use, then fewest in use, then fewest placed so far, then URL) or answers None; ``release()``
    gives the slot back. ``update()`` replaces the set of ready endpoints; listeners hear about every
    change of capacity, so the queue can grant the freed or added slots at once.
    """

    def __init__(self, service: str, *, eject_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.service = service
        self.eject_s = eject_s
        self.clock = clock
        self.endpoints: dict[str, Endpoint] = {}
        self.origin: Origin = "none"
        self.wakeups = 0  # times capacity went from zero to some while stages waited
        self._listeners: list[ChangeListener] = []
        self._waiting: Callable[[], int] = lambda: 0
        self._reopen: asyncio.TimerHandle | None = None

    # -- wiring ----------------------------------------------------------------------------------
    def listen(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def count_waiting_with(self, waiting: Callable[[], int]) -> None:
        """How many stages wait for this service (a wake-up is counted only when some did)."""
        self._waiting = waiting

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    # -- state -----------------------------------------------------------------------------------
    def ready_endpoints(self) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.ready]

    def ready_count(self) -> int:
        return len(self.ready_endpoints())

    def capacity(self) -> int:
        """Slots of the ready endpoints (what may run at once)."""
        return sum(e.slots for e in self.ready_endpoints())

    def busy_slots(self) -> int:
        """Slots in use on ready endpoints (a gone endpoint's stages are not capacity)."""
        return sum(min(e.busy, e.slots) for e in self.ready_endpoints())

    def open_slots(self) -> int:
        """Slots a stage could be placed on now."""
        now = self.clock()
        return sum(e.open_slots(now) for e in self.endpoints.values())

    def busy_by_url(self) -> dict[str, int]:
        return {u: e.busy for u, e in self.endpoints.items() if e.busy}

    # -- placement -------------------------------------------------------------------------------
    def acquire(self) -> Endpoint | None:
        now = self.clock()
        candidates = [e for e in self.endpoints.values() if e.open_slots(now) > 0]
        if not candidates:
            return None
        best = min(candidates, key=lambda e: (e.busy / e.slots, e.busy, e.placed, e.url))
        best.busy += 1
        best.placed += 1
        return best

    def release(self, url: str) -> None:
        ep = self.endpoints.get(url)
        if ep is None:
            return
        ep.busy = max(0, ep.busy - 1)
        if not ep.ready and ep.busy == 0:
            del self.endpoints[url]  # gone from the slices and now idle: forget it
        self._changed()

    def unreachable(self, url: str) -> None:
        """A refused or reset connection: no new stages there for ``eject_s`` (the slices usually
        catch up within that time and remove it for good)."""
        ep = self.endpoints.get(url)
        if ep is None or not ep.ready or self.origin == "static":
            return  # the Service URL balances over whatever is up: backoff is the answer there
        first = ep.ejected_until <= self.clock()
        ep.ejected_until = self.clock() + self.eject_s
        if first:
            log.warning(
                "%s endpoint %s refused a connection: no new stages there for %.0fs",
                self.service.upper(),
                url,
                self.eject_s,
            )
            self._schedule_reopen()
        self._changed()

    def _schedule_reopen(self) -> None:
        # When the ejection ends, the waiting stages must hear that the slots are back.
        with contextlib.suppress(RuntimeError):  # no running loop (sync unit tests)
            loop = asyncio.get_running_loop()
            if self._reopen is not None:
                self._reopen.cancel()
            self._reopen = loop.call_later(self.eject_s + 0.01, self._changed)

    # -- updates ---------------------------------------------------------------------------------
    def update(self, addresses: Iterable[EndpointAddress], slots_by_url: Mapping[str, int], *, origin: Origin) -> None:
        """Make exactly ``addresses`` the ready endpoints, with ``slots_by_url[url]`` slots each."""
        before = self.capacity()
        wanted = {a.url: a for a in addresses}
        for url, ep in list(self.endpoints.items()):
            if url not in wanted and ep.ready:
                ep.ready = False
                log.info(
                    "%s endpoint %s (%s) is gone or not ready: %d stage(s) still running there, no new ones",
                    self.service.upper(),
                    url,
                    ep.pod or "?",
                    ep.busy,
                )
                if ep.busy == 0:
                    del self.endpoints[url]
        for url, a in wanted.items():
            n = max(1, int(slots_by_url.get(url, 1)))
            known = self.endpoints.get(url)
            if known is None:
                self.endpoints[url] = Endpoint(url, n, a.pod)
                log.info("%s endpoint %s (%s) is ready with %d slot(s)", self.service.upper(), url, a.pod or "?", n)
            else:
                if not known.ready:
                    known.ready = True
                    known.ejected_until = 0.0
                known.slots, known.pod = n, a.pod or known.pod
        self.origin = origin
        after = self.capacity()
        if before == 0 and after > 0 and self._waiting() > 0:
            self.wakeups += 1
            log.info(
                "%s: a replica is ready again, %d stage(s) were waiting for one", self.service.upper(), self._waiting()
            )
        self._changed()

    def set_static(self, url: str, slots: int) -> None:
        """No discovery: the Service URL is the one endpoint, with the configured concurrency."""
        self.update([EndpointAddress(url)], {url: slots}, origin="static")


def use_service_url(pool: EndpointPool, url: str, slots: int, why: str) -> None:
    """Fall back to the Service URL with ``slots`` slots, and say so (the one place that does)."""
    log.warning(
        "%s endpoint discovery unavailable (%s): calling the Service URL %s with %d slot(s)",
        pool.service.upper(),
        why,
        url,
        slots,
    )
    pool.set_static(url, slots)
