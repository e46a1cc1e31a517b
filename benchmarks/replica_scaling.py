"""Throughput and slot utilisation of the operator's placement with 1, 2 and 4 service replicas.

Real kopf with the operator's handlers (KopfRunner, in this process) against the operator tests' API
emulator (in a child process, serving TranscriptionJobs and discovery.k8s.io/v1 EndpointSlices), and
stand-in ASR replicas of fixed per-request cost (in another child process: each answers a
transcription after ``--cost`` seconds, offers ``--slots`` slots on /v1/capacity and records when
each request started and ended). Per run, all jobs are created while the ASR Service has no ready
endpoint (they queue), then the replicas are published in its EndpointSlices at t0:

- jobs/s: jobs / (t0 -> all Succeeded);
- slot utilisation while jobs are queued: slot-seconds busy / (replicas x slots x window), the
  window from the first request (the operator knows the replicas) to the start of the last one
  (after it nothing waits any more); the time from t0 to the first request is reported apart
  (watch event, capacity probe, grant), and so is the median handoff (a slot freed on a replica to
  the next request arriving there);
- the most requests one replica had in flight (never above its slots).

    .venv/bin/python -m benchmarks.replica_scaling                       # the table in docs/benchmarks.md
    .venv/bin/python -m benchmarks.replica_scaling --replicas 1 2 4 8 --jobs 96 --cost 1.0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp.web
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
from tests.support.emulator import Kind, builtin_validator
from tests.support.processes import free_port

MODULE = "benchmarks.replica_scaling"
SLICES = f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices"
ENDPOINT_SLICES = Kind("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", validate=builtin_validator())


def serve_replicas(n: int, slots: int, cost_s: float) -> int:
    """Child-process mode: ``n`` stand-in ASR replicas of fixed per-request cost on one event loop."""
    spans: dict[int, list[tuple[float, float]]] = {}
    peak: dict[int, int] = {}

    def app(port: int) -> aiohttp.web.Application:
        in_flight = 0

        async def capacity(request: aiohttp.web.Request) -> aiohttp.web.Response:
            return aiohttp.web.json_response({"slots": slots, "max_queue": 64})

        async def transcribe(request: aiohttp.web.Request) -> aiohttp.web.Response:
            nonlocal in_flight
            await request.read()
            start = time.monotonic()
            in_flight += 1
            peak[port] = max(peak.get(port, 0), in_flight)
            try:
                await asyncio.sleep(cost_s)  # the fixed cost of one recording on one GPU slot
            finally:
                in_flight -= 1
                spans.setdefault(port, []).append((start, time.monotonic()))
            return aiohttp.web.json_response(
                {
                    "text": "xin chào",
                    "duration": 2.0,
                    "model": "stand-in",
                    "language": "vi",
                    "segments": [{"text": "xin chào", "start": 0.0, "end": 2.0}],
                }
            )

        a = aiohttp.web.Application()
        a.router.add_get("/v1/capacity", capacity)
        a.router.add_get("/readyz", capacity)
        a.router.add_post("/v1/transcriptions", transcribe)
        return a

    async def main() -> None:
        runners = []
        ports = [free_port() for _ in range(n)]
        for port in ports:
            runner = aiohttp.web.AppRunner(app(port))
            await runner.setup()
            await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
            runners.append(runner)
        print(json.dumps(ports), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for r in runners:
            await r.cleanup()
        print(json.dumps({"spans": spans, "peak": peak}), flush=True)

    asyncio.run(main())
    return 0


def _slice(i: int, port: int, ready: bool) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "addressType": "IPv4",
        "metadata": {"name": f"omoai-asr-{i}", "labels": {"kubernetes.io/service-name": "omoai-asr"}},
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": ready}}],
    }


def run(replicas: int, n_jobs: int, slots: int, cost_s: float, workdir: Path) -> dict[str, float]:
    emu = Child(MODULE, "--serve-emulator")
    reps = Child(MODULE, "--serve-replicas", str(replicas), "--slots", str(slots), "--cost", str(cost_s))
    ports: list[int] = json.loads(reps.first)
    kubeconfig = write_kubeconfig(workdir / f"kubeconfig-{replicas}", emu.first)
    data = workdir / f"data-{replicas}"
    data.mkdir()
    http = httpx.Client(base_url=emu.first, timeout=30)
    try:
        for i, port in enumerate(ports):  # the pods exist but are not ready: the Service is at zero
            http.post(SLICES, json=_slice(i, port, False)).raise_for_status()
        with run_operator(
            kubeconfig,
            data,
            OMOAI_ASR_URL=f"http://omoai-asr.{NS}.svc:8000",
            OMOAI_LLM_URL=f"http://omoai-llm.{NS}.svc:8000",
            OMOAI_ENDPOINT_DISCOVERY="true",
        ):
            time.sleep(1.0)
            for i in range(n_jobs):
                http.post(
                    JOBS, json=job(f"scale-{i:04d}", f"https://audio.example/{i}.wav", ASR_ONLY)
                ).raise_for_status()
            deadline = time.monotonic() + 120
            while True:
                items = http.get(JOBS).json()["items"]
                if sum(1 for o in items if (o.get("status") or {}).get("phase") == "Queued") == n_jobs:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the jobs did not all queue")
                time.sleep(0.2)
            t0 = time.monotonic()
            for i, port in enumerate(ports):  # the replicas become ready
                http.put(f"{SLICES}/omoai-asr-{i}", json=_slice(i, port, True)).raise_for_status()
            wait_until_finished(http, n_jobs, timeout_s=900, poll_s=0.1)
            elapsed = time.monotonic() - t0
    finally:
        out = json.loads(reps.stop() or "{}")
        emu.stop()
    spans = [s for per in out["spans"].values() for s in per]
    first_start = min(s for s, _ in spans)
    last_start = max(s for s, _ in spans)
    window = last_start - first_start
    busy = sum(max(0.0, min(e, last_start) - s) for s, e in spans)
    gaps = []  # per replica: a slot's end to the next request's start there (the operator's handoff)
    for per in out["spans"].values():
        ends = sorted(e for _, e in per)
        starts = sorted(s for s, _ in per)[slots:]  # each request after the first wave fills a freed slot
        gaps += [s - e for s, e in zip(starts, ends, strict=False)]
    gaps.sort()
    if os.environ.get("BENCH_DEBUG"):
        print("gaps", [round(g, 3) for g in gaps], file=sys.stderr)
    return {
        "replicas": replicas,
        "slots": replicas * slots,
        "jobs": n_jobs,
        "elapsed": elapsed,
        "discovery": first_start - t0,
        "handoff_p50": gaps[len(gaps) // 2] if gaps else 0.0,
        "rate": n_jobs / elapsed,
        "utilisation": busy / (replicas * slots * window),
        "peak": max(out["peak"].values()),
        "per_replica": sorted(len(v) for v in out["spans"].values()),
        "requests": len(spans),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--jobs", type=int, default=48)
    p.add_argument("--slots", type=int, default=4, help="slots per replica")
    p.add_argument("--cost", type=float, default=4.0, help="seconds per request")
    p.add_argument("--serve-emulator", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--serve-replicas", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_emulator:
        return serve_emulator(ENDPOINT_SLICES)
    if args.serve_replicas:
        return serve_replicas(args.serve_replicas, args.slots, args.cost)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(r, args.jobs, args.slots, args.cost, Path(tmp)) for r in args.replicas]
    ideal = args.slots / args.cost  # jobs/s of one replica kept fully busy
    print(
        "| replicas | slots | jobs | time to all Succeeded | jobs/s | vs 1 replica | ideal jobs/s "
        "| slot utilisation while queued | ready → 1st request | handoff p50 "
        "| most in flight on one replica | requests per replica |"
    )
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
    for r in rows:
        print(
            f"| {r['replicas']} | {r['slots']} | {r['jobs']} | {r['elapsed']:.2f} s | {r['rate']:.2f} | "
            f"{r['rate'] / rows[0]['rate']:.2f}x | {ideal * r['replicas']:.2f} | {100 * r['utilisation']:.1f} % | "
            f"{1000 * r['discovery']:.0f} ms | {1000 * r['handoff_p50']:.0f} ms | {r['peak']} | {', '.join(map(str, r['per_replica']))} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
