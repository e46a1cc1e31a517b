"""Capacity probing: how many stages each endpoint takes at once (its slots), from the setting or
from what the replica advertises on ``GET /v1/capacity``.

Probes run apart from the EndpointSlice watch (see :class:`~omoai_operator.slices.SliceWatcher`):
a slow replica never holds up reading the watch stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

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

    async def lookup(self, urls: Iterable[str]) -> dict[str, int]:
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
