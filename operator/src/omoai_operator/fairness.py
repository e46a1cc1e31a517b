"""The order of one service's line: strict priority between levels; within a level, namespaces take
free slots in turn, each in proportion to its weight; within a namespace, oldest first.

The turns are stride scheduling (start-time fair queueing with unit costs): every namespace of a
level has a *pass*, the virtual time it has used; a grant goes to the namespace whose next grant
would end earliest (``pass + 1 / weight``) and advances its pass by ``1 / weight``. A namespace
that starts waiting joins at the level's current virtual time (the start of the last turn
granted), so idle time earns no credit and past use costs at most one turn: a namespace with 5 jobs
arriving behind one with 500 gets the next turn, not the 501st.

Pure logic, no asyncio: :class:`~omoai_operator.queue.CapacityQueue` holds one :class:`FairLine`
per service.
"""

from __future__ import annotations

import bisect
import datetime as dt
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Ticket:
    """A place in line: higher ``priority`` first, then the older ``created``, then the key.
    ``namespace`` decides whose turn it is among tickets of one priority."""

    sort_key: tuple[int, float, str, int] = field(init=False, repr=False)
    key: str = field(compare=False)
    priority: int = field(compare=False, default=0)
    created: dt.datetime | None = field(compare=False, default=None)
    namespace: str = field(compare=False, default="")

    def __post_init__(self) -> None:
        created = self.created.timestamp() if self.created is not None else time.time()
        object.__setattr__(self, "sort_key", (-self.priority, created, self.key, next(_SEQ)))


_SEQ = itertools.count()

#: A namespace's weight (> 0); a namespace of weight 2 gets two turns for another's one.
Weights = Callable[[str], float]


@dataclass
class _Level:
    """The tickets of one priority, by namespace (each list sorted), and the namespaces' passes."""

    lines: dict[str, list[Ticket]] = field(default_factory=dict)
    passes: dict[str, float] = field(default_factory=dict)
    vtime: float = 0.0  # the start of the last granted turn


class FairLine:
    """Tickets waiting for one service, served fairly (see the module docstring)."""

    def __init__(self, weight: Weights = lambda ns: 1.0) -> None:
        self._weight = weight
        self._levels: dict[int, _Level] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, ticket: Ticket) -> None:
        level = self._levels.setdefault(ticket.priority, _Level())
        line = level.lines.get(ticket.namespace)
        if line is None:
            line = level.lines[ticket.namespace] = []
            level.passes[ticket.namespace] = max(level.passes.get(ticket.namespace, 0.0), level.vtime)
        bisect.insort(line, ticket)
        self._size += 1

    def remove(self, ticket: Ticket) -> bool:
        level = self._levels.get(ticket.priority)
        line = level.lines.get(ticket.namespace) if level is not None else None
        if level is None or line is None:
            return False
        i = bisect.bisect_left(line, ticket)
        if i == len(line) or line[i] is not ticket:
            return False
        del line[i]
        self._size -= 1
        self._tidy(ticket.priority, ticket.namespace)
        return True

    def pop(self, eligible: Callable[[str], bool] = lambda ns: True) -> Ticket | None:
        """The next ticket to serve among the namespaces ``eligible`` says may run one more."""
        for priority in sorted(self._levels, reverse=True):
            level = self._levels[priority]
            best: tuple[float, tuple[int, float, str, int], str] | None = None
            for ns, line in level.lines.items():
                if not eligible(ns):
                    continue
                candidate = (level.passes[ns] + 1.0 / self._weight(ns), line[0].sort_key, ns)
                if best is None or candidate < best:
                    best = candidate
            if best is None:
                continue  # every namespace of this level is at its cap: lower levels may run
            end, _, ns = best
            ticket = level.lines[ns].pop(0)
            level.vtime, level.passes[ns] = level.passes[ns], end
            self._size -= 1
            self._tidy(priority, ns)
            return ticket
        return None

    def order(self) -> list[Ticket]:
        """Every ticket in the order it would be served, were slots to free one at a time and no
        cap to hold anyone back (the positions waiting jobs are told). O(n log namespaces)."""
        out: list[Ticket] = []
        for priority in sorted(self._levels, reverse=True):
            level = self._levels[priority]
            heap = [
                (level.passes[ns] + 1.0 / self._weight(ns), line[0].sort_key, ns, 0) for ns, line in level.lines.items()
            ]
            heapq.heapify(heap)
            while heap:
                end, _, ns, i = heapq.heappop(heap)
                line = level.lines[ns]
                out.append(line[i])
                if i + 1 < len(line):
                    heapq.heappush(heap, (end + 1.0 / self._weight(ns), line[i + 1].sort_key, ns, i + 1))
        return out

    def _tidy(self, priority: int, ns: str) -> None:
        # A pass at or behind the level's virtual time says nothing a returning namespace would not
        # get anyway (it joins at that time): only passes ahead of it are kept, so memory stays
        # bounded by the namespaces served lately, and a namespace whose jobs were granted at once
        # (its line empty in between) still has its turns counted when another one arrives.
        level = self._levels[priority]
        if not level.lines[ns]:
            del level.lines[ns]
            if level.passes[ns] <= level.vtime:
                del level.passes[ns]
        if not level.lines:
            level.passes = {n: p for n, p in level.passes.items() if p > level.vtime}
            if not level.passes:
                del self._levels[priority]
