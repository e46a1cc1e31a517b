"""Capacity that follows the replicas: the ready endpoints of each service, how many stages each
one takes at once (its slots), and which one a stage goes to.

- :func:`parse_slices` turns the ``discovery.k8s.io/v1`` EndpointSlices of a Service into the
  endpoints that may take work: ready and not terminating (a terminating pod finishes what it has
  but gets nothing new), one per address and port.
- :class:`EndpointPool` is the placement: a stage goes to the least-loaded endpoint with a free
  slot; an endpoint that appears adds its slots at once, one that goes away (or stops being ready)
  takes its slots out at once while the stages it runs finish or fail there (and are retried
  elsewhere by the job's backoff). An endpoint that refuses connections is set aside for a while
  even before its slice says so.
- :class:`SliceWatcher` keeps a pool up to date from the API server (list, then watch from the
  list's resourceVersion; relist on 410). Where discovery is unavailable (``omoai run``, no RBAC
  for endpointslices, no such API) the pool holds one static endpoint, the Service URL, with the
  configured concurrency, and the log says so.

Which endpoint a running stage was placed on travels in :data:`ROUTE`, a context variable the
capacity queue sets for the holder of a slot and the service clients read.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SLICES_PATH = "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"


@dataclass(frozen=True, order=True)
class EndpointAddress:
    """One replica as discovery sees it: where to call it, and the pod behind it (for logs)."""

    url: str
    pod: str = ""


@dataclass
class Endpoint:
    url: str
    slots: int
    pod: str = ""
    used: int = 0
    ready: bool = True  # False once it left the slices (its running stages still count in ``used``)
    ejected_until: float = 0.0  # monotonic time; refused connections set it
    placed: int = 0  # stages placed here since it appeared

    def free(self, now: float) -> int:
        if not self.ready or now < self.ejected_until:
            return 0
        return max(0, self.slots - self.used)


@dataclass(frozen=True)
class Placement:
    """The endpoint a stage holds a slot of; ``unreachable()`` when it refused the connection."""

    service: str
    url: str
    pool: EndpointPool

    def unreachable(self) -> None:
        self.pool.unreachable(self.url)


#: The placement of the stage running in this task (set by the capacity queue, read by the clients).
ROUTE: contextvars.ContextVar[Placement | None] = contextvars.ContextVar("omoai_route", default=None)


def _url(scheme: str, address: str, port: int) -> str:
    try:
        if ipaddress.ip_address(address).version == 6:
            address = f"[{address}]"
    except ValueError:
        pass  # an FQDN endpoint
    return f"{scheme}://{address}:{port}"


def _slice_port(slice_: Mapping[str, Any], port_name: str | None) -> int | None:
    ports = [p for p in slice_.get("ports") or [] if isinstance(p, Mapping) and p.get("port")]
    if port_name:
        named = [p for p in ports if p.get("name") == port_name]
        if named:
            return int(named[0]["port"])
    if len(ports) == 1:
        return int(ports[0]["port"])
    return None


def parse_slices(
    slices: Iterable[Mapping[str, Any]], *, scheme: str = "http", port_name: str | None = "http"
) -> list[EndpointAddress]:
    """The endpoints of a Service's slices that may take new work, sorted, without duplicates.

    Per the EndpointSlice API: ``conditions.ready`` unset means ready; a terminating endpoint is
    counted out even while it still serves; consumers use the first address of an endpoint. A slice
    without the named port (and not exactly one port) contributes nothing.
    """
    out: set[EndpointAddress] = set()
    for s in slices:
        port = _slice_port(s, port_name)
        if port is None:
            continue
        for ep in s.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            if cond.get("ready") is False or cond.get("terminating") is True:
                continue
            addresses = ep.get("addresses") or []
            if not addresses:
                continue
            pod = (ep.get("targetRef") or {}).get("name") or ""
            out.add(EndpointAddress(_url(scheme, str(addresses[0]), port), pod))
    return sorted(out)


ChangeListener = Callable[[], None]


class EndpointPool:
    """The endpoints of one service and the slots used on each.

    ``acquire()`` picks the least-loaded endpoint with a free slot (lowest share of its slots in
    use, then fewest in use, then fewest placed so far, then URL) or answers None; ``release()``
    gives the slot back. ``update()`` replaces the set of ready endpoints; listeners hear about every
    change of capacity, so the queue can grant the freed or added slots at once.
    """

    def __init__(self, service: str, *, eject_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.service = service
        self.eject_s = eject_s
        self.clock = clock
        self.endpoints: dict[str, Endpoint] = {}
        self.source = "none"  # "endpointslices", "static" (the Service URL) or "none" yet
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
    def ready(self) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.ready]

    def ready_count(self) -> int:
        return len(self.ready())

    def capacity(self) -> int:
        """Slots of the ready endpoints (what may run at once)."""
        return sum(e.slots for e in self.ready())

    def used(self) -> int:
        """Slots in use on ready endpoints (a gone endpoint's stages are not capacity)."""
        return sum(min(e.used, e.slots) for e in self.ready())

    def free(self) -> int:
        now = self.clock()
        return sum(e.free(now) for e in self.endpoints.values())

    def in_use(self) -> dict[str, int]:
        return {u: e.used for u, e in self.endpoints.items() if e.used}

    # -- placement -------------------------------------------------------------------------------
    def acquire(self) -> Endpoint | None:
        now = self.clock()
        candidates = [e for e in self.endpoints.values() if e.free(now) > 0]
        if not candidates:
            return None
        best = min(candidates, key=lambda e: (e.used / e.slots, e.used, e.placed, e.url))
        best.used += 1
        best.placed += 1
        return best

    def release(self, url: str) -> None:
        ep = self.endpoints.get(url)
        if ep is None:
            return
        ep.used = max(0, ep.used - 1)
        if not ep.ready and ep.used == 0:
            del self.endpoints[url]  # gone from the slices and now idle: forget it
        self._changed()

    def unreachable(self, url: str) -> None:
        """A refused or reset connection: no new stages there for ``eject_s`` (the slices usually
        catch up within that time and remove it for good)."""
        ep = self.endpoints.get(url)
        if ep is None or not ep.ready or self.source == "static":
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
    def update(self, addresses: Iterable[EndpointAddress], slots: Mapping[str, int], *, source: str) -> None:
        """Make exactly ``addresses`` the ready endpoints, with ``slots[url]`` slots each."""
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
                    ep.used,
                )
                if ep.used == 0:
                    del self.endpoints[url]
        for url, a in wanted.items():
            n = max(1, int(slots.get(url, 1)))
            known = self.endpoints.get(url)
            if known is None:
                self.endpoints[url] = Endpoint(url, n, a.pod)
                log.info("%s endpoint %s (%s) is ready with %d slot(s)", self.service.upper(), url, a.pod or "?", n)
            else:
                if not known.ready:
                    known.ready = True
                    known.ejected_until = 0.0
                known.slots, known.pod = n, a.pod or known.pod
        self.source = source
        after = self.capacity()
        if before == 0 and after > 0 and self._waiting() > 0:
            self.wakeups += 1
            log.info(
                "%s: a replica is ready again, %d stage(s) were waiting for one", self.service.upper(), self._waiting()
            )
        self._changed()

    def set_static(self, url: str, slots: int) -> None:
        """No discovery: the Service URL is the one endpoint, with the configured concurrency."""
        self.update([EndpointAddress(url)], {url: slots}, source="static")


# -- slots per endpoint ---------------------------------------------------------------------------
SlotsProbe = Callable[[str], Awaitable[int | None]]


async def probe_slots(url: str, *, timeout_s: float = 5.0) -> int | None:
    """The slots a replica advertises on ``GET /v1/capacity`` (``{"slots": N}``), or None."""
    import aiohttp

    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http,
            http.get(url + "/v1/capacity") as resp,
        ):
            if resp.status != 200:
                return None
            data = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        log.debug("capacity probe of %s failed: %s", url, e)
        return None
    slots = data.get("slots") if isinstance(data, dict) else None
    return slots if isinstance(slots, int) and slots >= 1 else None


@dataclass
class SlotBook:
    """Slots per endpoint: a configured number, else what each endpoint advertises (asked once per
    endpoint), else ``fallback``."""

    service: str
    configured: int | None
    fallback: int
    probe: SlotsProbe = probe_slots
    known: dict[str, int] = field(default_factory=dict)

    async def slots(self, urls: Iterable[str]) -> dict[str, int]:
        urls = list(urls)
        if self.configured is not None:
            return {u: self.configured for u in urls}
        for gone in set(self.known) - set(urls):
            del self.known[gone]  # a pod that comes back at this address may have other settings
        missing = [u for u in urls if u not in self.known]
        if missing:
            answers = await asyncio.gather(*(self.probe(u) for u in missing))
            for u, n in zip(missing, answers, strict=True):
                if n is None:
                    log.warning(
                        "%s endpoint %s does not advertise its capacity on /v1/capacity: using %d slot(s)",
                        self.service.upper(),
                        u,
                        self.fallback,
                    )
                    n = self.fallback
                self.known[u] = n
        return {u: self.known[u] for u in urls}


# -- discovery ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServiceRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def service_ref(setting: str | None, url: str, default_namespace: str | None) -> ServiceRef | None:
    """The Service whose slices to watch: ``setting`` (``name`` or ``namespace/name``), else the
    host of ``url`` when it is a cluster Service name (``name``, ``name.ns``, ``name.ns.svc...``).
    None when neither names one (an IP address, localhost, an external host)."""
    if setting:
        ns, sep, name = setting.partition("/")
        if sep:
            return ServiceRef(ns, name) if ns and name else None
        return ServiceRef(default_namespace, setting) if default_namespace else None
    host = urlsplit(url).hostname or ""
    if not host or host == "localhost":
        return None
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return None
    labels = host.split(".")
    if len(labels) == 1:
        return ServiceRef(default_namespace, labels[0]) if default_namespace else None
    if len(labels) == 2 or labels[2] == "svc":
        return ServiceRef(labels[1], labels[0])
    return None


class DiscoveryUnavailable(Exception):
    """The API server will not tell us the endpoints (forbidden, no such API): use the Service URL."""


class SliceSource(Protocol):
    """What the watcher needs from a Kubernetes client (list and watch of one collection)."""

    async def list(self, path: str, params: Mapping[str, str]) -> dict[str, Any]: ...

    def watch(self, path: str, params: Mapping[str, str]) -> Any:
        """An async iterator of watch events (dicts with ``type`` and ``object``)."""
        ...


class SliceWatcher:
    """Keeps ``pool`` equal to the ready endpoints of ``ref``'s EndpointSlices."""

    def __init__(
        self,
        pool: EndpointPool,
        ref: ServiceRef,
        source: Callable[[], SliceSource],
        slots: SlotBook,
        *,
        scheme: str = "http",
        port_name: str | None = "http",
        fallback_url: str,
        fallback_slots: int,
        watch_timeout_s: int = 300,
        retry_s: float = 2.0,
    ) -> None:
        self.pool = pool
        self.ref = ref
        self.source = source
        self.slots = slots
        self.scheme = scheme
        self.port_name = port_name
        self.fallback_url = fallback_url
        self.fallback_slots = fallback_slots
        self.watch_timeout_s = watch_timeout_s
        self.retry_s = retry_s
        self.slices: dict[str, Mapping[str, Any]] = {}
        self.synced = asyncio.Event()  # set after the first list (or the fallback)

    @property
    def path(self) -> str:
        return SLICES_PATH.format(namespace=self.ref.namespace)

    @property
    def selector(self) -> str:
        return f"{SERVICE_NAME_LABEL}={self.ref.name}"

    async def _apply(self) -> None:
        addresses = parse_slices(self.slices.values(), scheme=self.scheme, port_name=self.port_name)
        slots = await self.slots.slots([a.url for a in addresses])
        # The slices may have changed while the probes ran: apply the newest state.
        latest = parse_slices(self.slices.values(), scheme=self.scheme, port_name=self.port_name)
        if latest != addresses:
            slots = await self.slots.slots([a.url for a in latest])
        self.pool.update(latest, slots, source="endpointslices")

    async def run(self) -> None:
        """List and watch until cancelled; falls back to the Service URL if discovery is refused."""
        first = True
        while True:
            try:
                rv = await self._list()
                if first:
                    log.info(
                        "%s capacity follows the EndpointSlices of Service %s: %d ready endpoint(s), %d slot(s)",
                        self.pool.service.upper(),
                        self.ref,
                        self.pool.ready_count(),
                        self.pool.capacity(),
                    )
                    first = False
                self.synced.set()
                await self._watch(rv)
            except asyncio.CancelledError:
                raise
            except DiscoveryUnavailable as e:
                if first:
                    self.fall_back(str(e))
                    return
                log.warning(
                    "%s endpoint discovery stopped (%s): keeping the last known endpoints", self.pool.service.upper(), e
                )
                await asyncio.sleep(max(self.retry_s, 30.0))
            except Exception as e:  # noqa: BLE001 - the API server restarts too; keep what we know
                log.warning(
                    "%s endpoint watch of %s failed (%s): retrying in %.0fs",
                    self.pool.service.upper(),
                    self.ref,
                    e,
                    self.retry_s,
                )
                await asyncio.sleep(self.retry_s)

    def fall_back(self, why: str) -> None:
        log.warning(
            "%s endpoint discovery unavailable (%s): calling the Service URL %s with %d slot(s)",
            self.pool.service.upper(),
            why,
            self.fallback_url,
            self.fallback_slots,
        )
        self.pool.set_static(self.fallback_url, self.fallback_slots)
        self.synced.set()

    async def _list(self) -> str:
        data = await self.source().list(self.path, {"labelSelector": self.selector})
        self.slices = {i["metadata"]["name"]: i for i in data.get("items") or []}
        await self._apply()
        return str((data.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, rv: str) -> None:
        params = {
            "labelSelector": self.selector,
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self.watch_timeout_s),
        }
        while True:
            if rv:
                params["resourceVersion"] = rv
            async for event in self.source().watch(self.path, params):
                kind, obj = event.get("type"), event.get("object") or {}
                meta = obj.get("metadata") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        return  # too old: relist
                    raise RuntimeError(f"watch error: {obj.get('message')}")
                rv = str(meta.get("resourceVersion") or rv)
                if kind == "BOOKMARK":
                    continue
                name = meta.get("name")
                if not name:
                    continue
                if kind == "DELETED":
                    self.slices.pop(name, None)
                else:
                    self.slices[name] = obj
                await self._apply()
            # The server ended the watch (timeoutSeconds): resume from the last version seen.
