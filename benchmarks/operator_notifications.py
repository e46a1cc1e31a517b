"""What webhook notifications cost the operator, and how soon they arrive.

The same harness as ``benchmarks/operator_throughput.py`` (real kopf with the operator's handlers,
the API emulator and the stand-in services in child processes), run in pairs, one configuration
right after the other on the same machine: N jobs without notifications, then N jobs each with a
webhook (``succeeded``/``failed``) to a receiver in a third child process that verifies every
signature with the ``standardwebhooks`` library. Reports jobs/s to all Succeeded for both and their
ratio per pair, and the time from each job's Succeeded transition (the delivery record's event
time) to the delivery's arrival at the receiver (p50/p95).

    .venv/bin/python -m benchmarks.operator_notifications                 # the table in docs/benchmarks.md
    .venv/bin/python -m benchmarks.operator_notifications --jobs 50 --pairs 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.operator_throughput import run


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--pairs", type=int, default=3, help="runs without and with notifications, interleaved")
    args = p.parse_args()
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.pairs):
            plain = run(args.jobs, args.concurrency, False, Path(tmp))
            hooked = run(args.jobs, args.concurrency, False, Path(tmp), notify=True)
            pairs.append((plain, hooked))
    print(
        "| pair | jobs | jobs/s without | jobs/s with notifications | with / without | Succeeded→delivered p50 | p95 |"
    )
    print("|--:|--:|--:|--:|--:|--:|--:|")
    for i, (a, b) in enumerate(pairs, 1):
        print(
            f"| {i} | {args.jobs} | {a['rate']:.1f} | {b['rate']:.1f} | {b['rate'] / a['rate']:.2f} | "
            f"{1000 * b['delivery_p50']:.0f} ms | {1000 * b['delivery_p95']:.0f} ms |"
        )
    ratio = statistics.median(b["rate"] / a["rate"] for a, b in pairs)
    p50 = statistics.median(b["delivery_p50"] for _, b in pairs)
    p95 = max(b["delivery_p95"] for _, b in pairs)
    print(
        f"\nmedian throughput ratio with/without: {ratio:.2f}; delivery p50 {1000 * p50:.0f} ms, worst p95 {1000 * p95:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
