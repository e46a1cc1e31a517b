"""The capacity queue with thousands of jobs waiting: CPU per queue change, before and after the
change that computes positions once per change and wakes only the waiters that must report.

No Kubernetes, no services: the queue alone, in one event loop, with one slot and N waiters that
each report their position (the driver's status write, here a counter) at the operator's interval
(0.5 s, growing with the position). Measured per implementation, side by side in one process:

- join: CPU seconds for N jobs to take their place in line;
- change: CPU milliseconds per slot turnover once the line has settled (every waiter has reported
  and sleeps): the head is granted and N-1 move up; counted over K turnovers 20 ms apart (default
  1) plus the position reports they cause within the next second;
- reports: position callbacks during those turnovers.

"before" is the queue of an older commit (``--before``, default the last one with the old queue),
loaded from git at run time; each of its changes costs O(N^2), so it is run only up to
``--before-max``.

    .venv/bin/python -m benchmarks.operator_queue                       # the table in docs/benchmarks.md
    .venv/bin/python -m benchmarks.operator_queue --sizes 500 2000 --changes 10
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The last commit with the fixed-limit lane and the O(n) position scan per waiter per change.
BEFORE = "a6abd43"
PKG = "operator/src/omoai_operator"


def _load_before(ref: str) -> types.ModuleType | None:
    """The old ``queue`` module (and the ``endpoints`` module it imports) from git, or None."""
    sources = {}
    for name in ("endpoints", "queue"):
        try:
            sources[name] = subprocess.run(
                ["git", "show", f"{ref}:{PKG}/{name}.py"], cwd=ROOT, capture_output=True, check=True, text=True
            ).stdout
        except (OSError, subprocess.CalledProcessError):
            return None
    modules = {}
    for name in ("endpoints", "queue"):
        spec = importlib.util.spec_from_loader(f"omoai_operator.{name}", loader=None)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        saved = sys.modules.get(f"omoai_operator.{name}")
        sys.modules[f"omoai_operator.{name}"] = module  # the old queue imports the old endpoints
        try:
            exec(compile(sources[name], f"{ref}:{name}.py", "exec"), module.__dict__)  # noqa: S102 - our own history
        finally:
            if name == "queue":
                for n in ("endpoints", "queue"):
                    if saved is not None or n == "queue":
                        sys.modules.pop(f"omoai_operator.{n}", None)
                if saved is not None:
                    sys.modules[f"omoai_operator.{name}"] = saved
        modules[name] = module
    sys.modules.pop("omoai_operator.endpoints", None)
    return modules["queue"]


class Impl:
    """One queue implementation behind the few calls the benchmark makes."""

    def __init__(self, label: str, make: Callable[[], Any], ticket: Callable[[str, int], Any], position: bool) -> None:
        self.label = label
        self.make = make
        self.ticket = ticket
        self.position = position  # the callback takes a Position (after) or an int (before)


def _after() -> Impl:
    from omoai_operator.fairness import Ticket
    from omoai_operator.placement import EndpointPool
    from omoai_operator.queue import CapacityQueue

    def make() -> Any:
        pool = EndpointPool("asr")
        pool.set_static("http://asr", 1)
        return CapacityQueue({"asr": pool})

    return Impl("after", make, lambda key, i: Ticket(key=key, created=_T0 + dt.timedelta(seconds=i)), True)


def _before(module: types.ModuleType) -> Impl:
    return Impl(
        "before",
        lambda: module.CapacityQueue({"asr": 1}),
        lambda key, i: module.Ticket(key=key, created=_T0 + dt.timedelta(seconds=i)),
        False,
    )


_T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


async def _run(impl: Impl, n: int, changes: int, interval_s: float) -> dict[str, float]:
    q = impl.make()
    reports = 0
    hold = asyncio.Event()
    last_granted = asyncio.Event()

    async def on_position(_: Any) -> None:
        nonlocal reports
        reports += 1

    async def holder() -> None:
        async with q.slot("asr", impl.ticket("h", 0)):
            await hold.wait()

    async def waiter(i: int) -> None:
        async with q.slot("asr", impl.ticket(f"w{i:06d}", 1 + i), on_position, interval_s):
            if i == changes - 1:
                last_granted.set()
            if i >= changes:
                await asyncio.Event().wait()  # holds its slot: the measured turnovers end here
            await asyncio.sleep(0.02)  # stages end at different moments: one change at a time

    h = asyncio.create_task(holder())
    await asyncio.sleep(0)
    c0 = time.process_time()
    tasks = [asyncio.create_task(waiter(i)) for i in range(n)]
    while q.depth("asr") < n:
        await asyncio.sleep(0.01)
    await asyncio.sleep(interval_s * 2)  # the first reports go out
    join_s = time.process_time() - c0
    reports = 0
    c1 = time.process_time()
    hold.set()  # K turnovers: each granted waiter below K leaves after 20 ms, passing the slot on
    await last_granted.wait()
    await asyncio.sleep(1.0)  # the reports those moves cause (rate-limited) go out
    change_s = (time.process_time() - c1) / changes
    for t in (*tasks, h):
        t.cancel()
    await asyncio.gather(*tasks, h, return_exceptions=True)
    return {"join_s": join_s, "change_ms": change_s * 1000, "reports": reports}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000], help="jobs waiting")
    ap.add_argument("--changes", type=int, default=1, help="slot turnovers measured per size")
    ap.add_argument("--interval", type=float, default=0.5, help="position report interval (the operator's)")
    ap.add_argument("--before", default=BEFORE, help="git commit of the old queue")
    ap.add_argument("--before-max", type=int, default=5000, help="largest size run on the old queue")
    args = ap.parse_args(argv)
    impls = [_after()]
    old = _load_before(args.before)
    if old is None:
        print(f"(no old queue at {args.before}: 'before' rows skipped)", file=sys.stderr)
    print("| jobs waiting | queue | join, CPU s | per slot turnover, CPU ms | position reports |")
    print("|---:|---|---:|---:|---:|")
    for n in args.sizes:
        row = [*impls]
        if old is not None and n <= args.before_max:
            row.insert(0, _before(old))  # interleaved: before then after, per size
        for impl in row:
            r = asyncio.run(_run(impl, n, args.changes, args.interval))
            print(f"| {n} | {impl.label} | {r['join_s']:.2f} | {r['change_ms']:.1f} | {r['reports']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
