#!/usr/bin/env python3
"""Load benchmark of the ASR HTTP service against the engine called directly.

Starts ``omoai-asr serve`` on loopback, sends 60 s recordings from 1, 4 and 16 concurrent
clients, and prints requests/s, audio-seconds/s and p50/p99 latency per level, plus the overhead
of the HTTP path (upload, audio decoding, batching window, JSON) over ``engine.transcribe`` on
the same input in this process. Without ``--model`` a random checkpoint of the chosen size is
generated (``--dims small`` by default; ``large`` is the published large-vie architecture).

    .venv/bin/python benchmarks/asr_service_load.py                      # CPU, small random model
    .venv/bin/python benchmarks/asr_service_load.py --dims large --device cuda
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import httpx
import numpy as np

DIMS = ("tiny", "small", "large")


def wav_bytes(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def make_model(kind: str, directory: Path) -> Path:
    from omoai_asr.engine.testing import LARGE_VIE, TINY, with_dims, write_random_checkpoint

    dims = {
        "tiny": TINY,
        "large": LARGE_VIE,
        "small": with_dims(TINY, n_state=256, n_head=4, n_ffn=1024, n_layer=6, n_vocab=1024),
    }[kind]
    return write_random_checkpoint(directory / f"random-{kind}", dims)


def direct(model: Path, inputs: list[np.ndarray], device: str, threads: int) -> list[float]:
    import torch
    from omoai_asr.engine import ChunkFormerEngine
    from omoai_gpu.memory import MemoryPolicy
    from prometheus_client import CollectorRegistry

    torch.set_num_threads(threads)
    engine = ChunkFormerEngine.load(
        model, MemoryPolicy.from_settings(device, "auto", debug_empty_cache=False, registry=CollectorRegistry())
    )
    engine.transcribe(inputs[0])  # warm-up
    times = []
    for x in inputs:
        t0 = time.perf_counter()
        engine.transcribe(x)
        if engine.policy.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


async def level(url: str, bodies: list[bytes], concurrency: int, n_requests: int, seconds: float) -> dict:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n_requests):
        queue.put_nowait(i)

    async def worker(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            t0 = time.perf_counter()
            r = await http.post("/v1/transcriptions", files={"file": bodies[i % len(bodies)]})
            r.raise_for_status()
            latencies.append(time.perf_counter() - t0)

    async with httpx.AsyncClient(base_url=url, timeout=3600) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {
        "concurrency": concurrency,
        "requests": n_requests,
        "rps": n_requests / wall,
        "audio_s_per_s": n_requests * seconds / wall,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="checkpoint directory (default: a random one)")
    p.add_argument("--dims", choices=DIMS, default="small", help="size of the random checkpoint")
    p.add_argument("--seconds", type=float, default=60.0, help="length of each input")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--requests", type=int, default=None, help="requests per level (default max(8, 2*c))")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2), help="torch CPU threads")
    p.add_argument("--max-batch-size", type=int, default=8)
    args = p.parse_args()

    from omoai_asr.engine.testing import synthetic_speech

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or make_model(args.dims, Path(tmp))
        inputs = [synthetic_speech(args.seconds, seed=s) for s in range(4)]
        bodies = [wav_bytes(x) for x in inputs]
        compute = direct(model, inputs, args.device, args.threads)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {
            **os.environ,
            "OMOAI_TORCH_THREADS": str(args.threads),
            "OMOAI_DEVICE": args.device,
            "OMOAI_MAX_BATCH_SIZE": str(args.max_batch_size),
            "OMOAI_LOG_LEVEL": "WARNING",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "omoai_asr", "serve", "--model", str(model), "--port", str(port)], env=env
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 600
            while True:
                try:
                    if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    print("the server did not start", file=sys.stderr)
                    return 1
                time.sleep(0.5)
            rows = [
                asyncio.run(level(url, bodies, c, args.requests or max(8, 2 * c), args.seconds))
                for c in args.concurrency
            ]
        finally:
            server.terminate()
            server.wait(60)

    engine_p50 = statistics.median(compute)
    print(
        f"model: {model.name if args.model else 'random ' + args.dims}, device {args.device}, "
        f"{args.threads} torch threads, {args.seconds:.0f} s inputs, max batch {args.max_batch_size}"
    )
    print(f"engine.transcribe direct: p50 {engine_p50 * 1000:.0f} ms per input (RTF {engine_p50 / args.seconds:.4f})")
    print()
    print("| clients | requests | req/s | audio s/s | p50 latency | p99 latency |")
    print("|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        print(
            f"| {r['concurrency']} | {r['requests']} | {r['rps']:.2f} | {r['audio_s_per_s']:.1f} "
            f"| {r['p50'] * 1000:.0f} ms | {r['p99'] * 1000:.0f} ms |"
        )
    one = next((r for r in rows if r["concurrency"] == 1), None)
    if one is not None:
        overhead = one["p50"] - engine_p50
        print()
        print(
            f"HTTP path overhead at 1 client: {overhead * 1000:.0f} ms per request = "
            f"{100 * overhead / engine_p50:.1f} % of engine compute (target < 5 %)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
