"""EndpointSlices: which Service to follow, which of its endpoints may take work, and the watcher
that keeps a service's :class:`~omoai_operator.placement.EndpointPool` equal to them.

- :func:`parse_slices` turns the ``discovery.k8s.io/v1`` EndpointSlices of a Service into the
  endpoints that may take work: ready and not terminating (a terminating pod finishes what it has
  but gets nothing new), one per address and port.
- :class:`SliceWatcher` runs an :class:`~omoai_operator.informer.Informer` on the slices and, in a
  task of its own, asks new endpoints their slots (:mod:`omoai_operator.probing`) and updates the
  pool. Where discovery is unavailable (no RBAC for endpointslices, no such API) the pool holds one
  static endpoint, the Service URL, with the configured concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from omoai_operator.informer import Informer, ListWatch
from omoai_operator.kube import DiscoveryUnavailable
from omoai_operator.placement import EndpointAddress, EndpointPool, use_service_url
from omoai_operator.probing import SlotBook

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SLICES_PATH = "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"


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


class SliceWatcher:
    """Keeps ``pool`` equal to the ready endpoints of ``ref``'s EndpointSlices."""

    def __init__(
        self,
        pool: EndpointPool,
        ref: ServiceRef,
        client: Callable[[], ListWatch],
        slot_book: SlotBook,
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
        self.slot_book = slot_book
        self.scheme = scheme
        self.port_name = port_name
        self.fallback_url = fallback_url
        self.fallback_slots = fallback_slots
        self._dirty = asyncio.Event()
        self.informer = Informer(
            f"{pool.service.upper()} endpoints of Service {ref}",
            client,
            SLICES_PATH.format(namespace=ref.namespace),
            self._dirty.set,
            selector=f"{SERVICE_NAME_LABEL}={ref.name}",
            watch_timeout_s=watch_timeout_s,
            retry_s=retry_s,
        )
        self.synced = asyncio.Event()  # set after the first list is applied (or the fallback)

    async def run(self) -> None:
        """Follow the slices until cancelled; falls back to the Service URL if discovery is refused."""
        applier = asyncio.create_task(self._apply_changes(), name=f"omoai-slots-{self.pool.service}")
        try:
            await self.informer.run()
        except DiscoveryUnavailable as e:
            use_service_url(self.pool, self.fallback_url, self.fallback_slots, str(e))
            self.synced.set()
        finally:
            applier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await applier

    async def _apply_changes(self) -> None:
        # Apart from the watch loop: probing a new replica's slots (up to seconds) never stops the
        # stream from being read; changes that arrive meanwhile are applied in the next round.
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            addresses = parse_slices(self.informer.objects.values(), scheme=self.scheme, port_name=self.port_name)
            slots = await self.slot_book.lookup(a.url for a in addresses)
            self.pool.update(addresses, slots, origin="endpointslices")
            if not self.synced.is_set():
                log.info(
                    "%s capacity follows the EndpointSlices of Service %s: %d ready endpoint(s), %d slot(s)",
                    self.pool.service.upper(),
                    self.ref,
                    self.pool.ready_count(),
                    self.pool.capacity(),
                )
                self.synced.set()
