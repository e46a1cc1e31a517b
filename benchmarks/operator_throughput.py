"""Operator reconcile throughput and latency, with instantly answering services.

Real kopf with the operator's handlers (KopfRunner, in this process) against the API emulator used
by the operator tests (kmock-based, serving the real CRD, in a child process so that it does not
share the operator's interpreter lock, as an API server would not), and stand-in ASR/LLM services
answering at once (in another child process, as the services run in their own pods). Measures,
per run:

- throughput: jobs created at once -> all Succeeded (jobs/s);
- time from each job's create call to the first ASR request for it (p50/p90/max).

    .venv/bin/python -m benchmarks.operator_throughput                # the table in docs/benchmarks.md
    .venv/bin/python -m benchmarks.operator_throughput --jobs 500 --concurrency 64

Run it as a module from the repository root: the emulator and stand-in services are the test
suite's (``tests.support``), imported like the tests import them.

Prints one table row per configuration.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks._operator_bench import (
    ASR_ONLY,
    JOBS,
    Child,
    job,
    run_operator,
    serve_emulator,
    wait_until_finished,
    write_kubeconfig,
)
from tests.support.operator_services import StubServices

MODULE = "benchmarks.operator_throughput"


def serve_stubs() -> int:
    """Child-process mode: the stand-in services on their own CPU/GIL, as separate pods would be.
    On exit, prints when each recording's first ASR request came (``time.monotonic`` is the same
    clock in every process of the machine)."""
    stubs = StubServices()
    print(stubs.url, flush=True)
    sys.stdin.read()
    stubs.close()
    print(json.dumps(stubs.asr_seen), flush=True)
    return 0


def run(n_jobs: int, concurrency: int, full: bool, workdir: Path) -> dict[str, float]:
    emu = Child(MODULE, "--serve-emulator")
    stubs = Child(MODULE, "--serve-stubs")
    kubeconfig = write_kubeconfig(workdir / "kubeconfig", emu.first)
    data = workdir / f"data-{n_jobs}-{concurrency}-{int(full)}"
    data.mkdir()
    http = httpx.Client(base_url=emu.first, timeout=30)
    postprocess = {} if full else ASR_ONLY
    created: dict[str, float] = {}
    try:
        with run_operator(
            kubeconfig,
            data,
            OMOAI_ASR_URL=stubs.first,
            OMOAI_LLM_URL=stubs.first,
            OMOAI_ASR_CONCURRENCY=str(concurrency),
            OMOAI_LLM_CONCURRENCY=str(concurrency),
        ):
            time.sleep(1.0)  # let the watch start
            t0 = time.monotonic()
            for i in range(n_jobs):
                name = f"bench-{i:04d}"
                url = f"https://audio.example/{name}.wav"
                created[url] = time.monotonic()
                http.post(JOBS, json=job(name, url, postprocess)).raise_for_status()
            create_s = time.monotonic() - t0
            wait_until_finished(http, n_jobs, timeout_s=600, poll_s=0.2)
            elapsed = time.monotonic() - t0
    finally:
        asr_seen = json.loads(stubs.stop() or "{}")
        emu.stop()
    latency = sorted(asr_seen[u] - created[u] for u in created)
    return {
        "jobs": n_jobs,
        "concurrency": concurrency,
        "elapsed": elapsed,
        "create": create_s,
        "rate": n_jobs / elapsed,
        "p50": statistics.median(latency),
        "p90": latency[int(0.9 * (len(latency) - 1))],
        "max": latency[-1],
        "first": latency[0],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 200])
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--serve-emulator", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--serve-stubs", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_emulator:
        return serve_emulator()
    if args.serve_stubs:
        return serve_stubs()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for full in (False, True):
            for n in args.jobs:
                rows.append((full, run(n, args.concurrency, full, Path(tmp))))
    print(
        "| stages | jobs | slots/service | creating them took | time to all Succeeded | jobs/s "
        "| create→1st ASR request p50 | p90 | max |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for full, r in rows:
        stages = "asr, write" if not full else "asr, punctuate, summarize, topics, write"
        print(
            f"| {stages} | {r['jobs']} | {r['concurrency']} | {r['create']:.2f} s | {r['elapsed']:.2f} s | {r['rate']:.1f} | "
            f"{1000 * r['p50']:.0f} ms | {1000 * r['p90']:.0f} ms | {1000 * r['max']:.0f} ms |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
