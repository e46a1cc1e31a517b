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
import base64
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks._operator_bench import (
    ASR_ONLY,
    JOBS,
    NS,
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


def serve_receiver() -> int:
    """Child-process mode: a webhook receiver verifying every delivery (key from
    ``BENCH_WEBHOOK_KEY``), as a customer's endpoint elsewhere; on exit prints the wall time each
    delivery arrived and whether its signature verified, by ``webhook-id``."""
    from tests.support.operator_services import WebhookReceiver

    receiver = WebhookReceiver([os.environ["BENCH_WEBHOOK_KEY"]])
    print(receiver.url, flush=True)
    sys.stdin.read()
    receiver.close()
    print(json.dumps({r.id: [r.wall, r.verified_by == [0]] for r in receiver.received}), flush=True)
    return 0


def run(n_jobs: int, concurrency: int, full: bool, workdir: Path, *, notify: bool = False) -> dict[str, float]:
    """One configuration. With ``notify`` every job also has a webhook (``succeeded`` and ``failed``)
    to a verifying receiver in a third child process: the rate is still time to all Succeeded, and
    ``delivery_p50``/``_p95`` are from each job's Succeeded transition to its delivery's arrival."""
    emu = Child(MODULE, "--serve-emulator")
    stubs = Child(MODULE, "--serve-stubs")
    receiver = None
    if notify:
        os.environ["BENCH_WEBHOOK_KEY"] = "whsec_" + base64.b64encode(os.urandom(24)).decode()
        receiver = Child(MODULE, "--serve-receiver")
    kubeconfig = write_kubeconfig(workdir / "kubeconfig", emu.first)
    data = workdir / f"data-{n_jobs}-{concurrency}-{int(full)}-{int(notify)}-{time.monotonic_ns()}"
    data.mkdir()
    http = httpx.Client(base_url=emu.first, timeout=30)
    postprocess = {} if full else ASR_ONLY
    hooks: list[dict[str, object]] = []
    if receiver is not None:
        secret = base64.b64encode(os.environ["BENCH_WEBHOOK_KEY"].encode()).decode()
        http.post(
            f"/api/v1/namespaces/{NS}/secrets",
            json={"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook"}, "data": {"signing-key": secret}},
        ).raise_for_status()
        hooks = [{"url": receiver.first, "secretRef": {"name": "hook"}}]
    created: dict[str, float] = {}
    try:
        with run_operator(
            kubeconfig,
            data,
            OMOAI_ASR_URL=stubs.first,
            OMOAI_LLM_URL=stubs.first,
            OMOAI_ASR_CONCURRENCY=str(concurrency),
            OMOAI_LLM_CONCURRENCY=str(concurrency),
            OMOAI_NOTIFY_ALLOW_HTTP="true",  # the receiver is plain http on loopback
            OMOAI_URL_ALLOWED_NETWORKS="127.0.0.0/8",
        ):
            time.sleep(1.0)  # let the watch start
            t0 = time.monotonic()
            for i in range(n_jobs):
                name = f"bench-{i:04d}"
                url = f"https://audio.example/{name}.wav"
                created[url] = time.monotonic()
                body = job(name, url, postprocess)
                body["spec"]["notifications"] = hooks
                http.post(JOBS, json=body).raise_for_status()
            create_s = time.monotonic() - t0
            items = wait_until_finished(http, n_jobs, timeout_s=600, poll_s=0.2)
            elapsed = time.monotonic() - t0
            while hooks:  # then until every delivery is recorded as done (bounded)
                items = http.get(JOBS).json()["items"]
                records = [r for o in items for r in o["status"].get("notifications", [])]
                if len(records) == n_jobs and all(r["state"] == "Delivered" for r in records):
                    break
                if time.monotonic() - t0 > 600:
                    raise RuntimeError("deliveries not done in 600 s")
                time.sleep(0.2)
    finally:
        asr_seen = json.loads(stubs.stop() or "{}")
        arrived = json.loads(receiver.stop() or "{}") if receiver is not None else {}
        emu.stop()
    extra: dict[str, float] = {}
    if hooks:
        events = {r["id"]: r["time"] for o in items for r in o["status"].get("notifications", [])}
        if not all(ok for _, ok in arrived.values()):
            raise RuntimeError("a delivery failed the receiver's signature check")
        lags = sorted(arrived[i][0] - dt.datetime.fromisoformat(t).timestamp() for i, t in events.items())
        extra = {"delivery_p50": statistics.median(lags), "delivery_p95": lags[int(0.95 * (len(lags) - 1))]}
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
    } | extra


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 200])
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--serve-emulator", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--serve-stubs", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--serve-receiver", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_emulator:
        return serve_emulator()
    if args.serve_stubs:
        return serve_stubs()
    if args.serve_receiver:
        return serve_receiver()
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
