"""Capacity queues for tests: each service one static endpoint (its Service URL) with N slots,
the same model the operator uses without endpoint discovery."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omoai_operator.placement import EndpointPool
from omoai_operator.queue import CapacityQueue


def static_queue(slots: Mapping[str, int], **kwargs: Any) -> CapacityQueue:
    """A queue whose service ``s`` calls ``http://s`` with ``slots[s]`` slots."""
    pools = {}
    for service, n in slots.items():
        pools[service] = EndpointPool(service)
        pools[service].set_static(f"http://{service}", n)
    return CapacityQueue(pools, **kwargs)
