"""An informer: list one collection of the Kubernetes API, then watch it from the list's
resourceVersion (relisting on 410), keeping its objects by name and saying when they changed.

The change callback is synchronous and must not block: anything slow (a capacity probe) runs in a
task of its own, so the watch stream is always read. Used for the EndpointSlices of the services
(:mod:`omoai_operator.slices`) and for the Namespace overrides (:mod:`omoai_operator.namespaces`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from omoai_operator.kube import DiscoveryUnavailable

log = logging.getLogger(__name__)


class ListWatch(Protocol):
    """What an informer needs from a Kubernetes client (list and watch of one collection)."""

    async def list(self, path: str, params: Mapping[str, str]) -> dict[str, Any]: ...

    def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        """The watch events (dicts with ``type`` and ``object``) until the server ends the watch."""
        ...


class Informer:
    """Keeps :attr:`objects` equal to the collection at ``path`` (filtered by ``selector``)."""

    def __init__(
        self,
        what: str,
        client: Callable[[], ListWatch],
        path: str,
        on_change: Callable[[], None],
        *,
        selector: str | None = None,
        watch_timeout_s: int = 300,
        retry_s: float = 2.0,
    ) -> None:
        self.what = what  # for logs: "ASR endpoints", "namespaces"
        self.client = client  # looked up per call: a re-login replaces the client
        self.path = path
        self.on_change = on_change
        self.selector = selector
        self.watch_timeout_s = watch_timeout_s
        self.retry_s = retry_s
        self.objects: dict[str, Mapping[str, Any]] = {}
        self.listed = False

    def _params(self) -> dict[str, str]:
        return {"labelSelector": self.selector} if self.selector else {}

    async def run(self) -> None:
        """List and watch until cancelled. ``DiscoveryUnavailable`` on the very first list is raised
        (the caller chooses a fallback); later it only pauses the informer, keeping what it knows."""
        while True:
            try:
                rv = await self._list()
                await self._watch(rv)
            except asyncio.CancelledError:
                raise
            except DiscoveryUnavailable as e:
                if not self.listed:
                    raise
                log.warning("watching %s stopped (%s): keeping the last known state", self.what, e)
                await asyncio.sleep(max(self.retry_s, 30.0))
            except Exception as e:  # noqa: BLE001 - the API server restarts too; keep what we know
                log.warning("watching %s failed (%s): retrying in %.0fs", self.what, e, self.retry_s)
                await asyncio.sleep(self.retry_s)

    async def _list(self) -> str:
        data = await self.client().list(self.path, self._params())
        self.objects = {i["metadata"]["name"]: i for i in data.get("items") or []}
        self.listed = True
        self.on_change()
        return str((data.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, rv: str) -> None:
        params = self._params() | {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self.watch_timeout_s),
        }
        while True:
            if rv:
                params["resourceVersion"] = rv
            async for event in self.client().watch(self.path, params):
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
                    self.objects.pop(name, None)
                else:
                    self.objects[name] = obj
                self.on_change()
            # The server ended the watch (timeoutSeconds): resume from the last version seen.
