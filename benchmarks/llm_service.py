"""LLM service benchmark: the service's overhead over the bare backend, and the speed-up of
concurrent map calls over sequential ones. Prints markdown tables (for docs/benchmarks.md).

1. Overhead: one ``POST /v1/punctuate`` through ``omoai-llm``'s app on uvicorn (loopback HTTP,
   validation, chunking, alignment, metrics) against the very same model calls replayed straight
   on the backend with the same concurrency. The difference is what the service costs.
2. Map concurrency: ``POST /v1/summarize`` on a transcript that does not fit the context
   (map-reduce), with ``concurrency=1`` against ``concurrency=N``.

Backends: ``transformers`` (a model directory or hub id, or a random model created on the fly:
``--model random`` with ``--dims``) and ``openai`` against a loopback OpenAI-compatible server
with a fixed per-call latency (``--upstream-latency-ms``), which stands in for a remote vLLM.

    .venv/bin/python benchmarks/llm_service.py --backend transformers --model random --dims small
    .venv/bin/python benchmarks/llm_service.py --backend transformers --model Qwen/Qwen2.5-0.5B-Instruct --device cuda
    .venv/bin/python benchmarks/llm_service.py --backend openai --upstream-latency-ms 200
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

DIMS = {"tiny": (32, 2), "small": (256, 4), "medium": (512, 8)}
WORDS = [
    "xin",
    "chào",
    "các",
    "bạn",
    "hôm",
    "nay",
    "chúng",
    "ta",
    "nói",
    "về",
    "trí",
    "tuệ",
    "nhân",
    "tạo",
    "và",
    "học",
    "máy",
    "trong",
    "doanh",
    "nghiệp",
    "cuộc",
    "họp",
    "bắt",
    "đầu",
    "lúc",
    "chín",
    "giờ",
    "sáng",
    "mọi",
    "người",
    "đã",
    "có",
    "mặt",
    "đầy",
    "đủ",
    "dự",
    "án",
    "hoàn",
    "thành",
    "đúng",
    "hạn",
    "chi",
    "phí",
    "giảm",
    "chất",
    "lượng",
    "tăng",
    "cảm",
    "ơn",
    "các",
    "bạn",
    "đã",
    "lắng",
    "nghe",
]


def _segments(n: int, words: int = 14) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        text = " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(words))
        out.append({"text": text, "start": i * 4.0, "end": i * 4.0 + 3.9})
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serve(app: Any) -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("server failed to start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def _fake_upstream(latency_s: float) -> Any:
    """An OpenAI-compatible chat server that answers after a fixed latency (echoing the input)."""
    import json

    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"data": [{"id": "upstream", "max_model_len": 2048}]}

    @app.post("/v1/chat/completions")
    async def chat(body: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(latency_s)
        system = body["messages"][0]["content"]
        user = body["messages"][-1]["content"]
        if "JSON" in system:
            text = json.dumps({"title": "T", "abstract": " ".join(user.split()[:30]), "bullets": ["a", "b"]})
        else:
            text = user.capitalize() + "."
        return {
            "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(user) // 3, "completion_tokens": len(text) // 3},
        }

    return app


class Recorder:
    """Wraps a backend and records every call, so the same calls can be replayed bare."""

    def __init__(self, inner: Any, shared: bool) -> None:
        self.inner = inner
        self.shared = shared  # one loaded model reused by every app of the benchmark: never closed
        self.calls: list[tuple[Any, int, float]] = []
        self.spans: list[tuple[str, float, float]] = []  # (system prompt, start, end) of each call

    async def close(self) -> None:
        if not self.shared:
            await self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def context_tokens(self) -> int:
        return self.inner.context_tokens

    async def generate(
        self, messages: Any, *, max_tokens: int, temperature: float = 0.0, schema: dict[str, Any] | None = None
    ) -> Any:
        self.calls.append((list(messages), max_tokens, temperature))
        started = time.perf_counter()
        try:
            return await self.inner.generate(messages, max_tokens=max_tokens, temperature=temperature, schema=schema)
        finally:
            self.spans.append((messages[0].content, started, time.perf_counter()))


class InstantBackend:
    """Answers at once (the input, capitalised, with a full stop) but counts tokens with the real
    tokenizer: what remains of a request's time is the service's own cost."""

    def __init__(self, counter: Any) -> None:
        self._counter = counter

    model_name = "instant"

    @property
    def context_tokens(self) -> int:
        return self._counter.context_tokens

    def count_tokens(self, text: str) -> int:
        return self._counter.count_tokens(text)

    async def generate(
        self, messages: Any, *, max_tokens: int, temperature: float = 0.0, schema: dict[str, Any] | None = None
    ) -> Any:
        from omoai_llm.backends.base import Completion

        user = messages[-1].content
        text = user.capitalize() + "."
        return Completion(text, self.count_tokens(user), self.count_tokens(text), "stop")

    async def close(self) -> None:
        pass


async def _replay(backend: Any, calls: list[tuple[Any, int, float]], concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one(call: tuple[Any, int, float]) -> None:
        async with sem:
            await backend.generate(call[0], max_tokens=call[1], temperature=call[2])

    started = time.perf_counter()
    await asyncio.gather(*(one(c) for c in calls))
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=["transformers", "openai"], default="transformers")
    ap.add_argument("--model", default="random", help="directory, hub id, or 'random' (transformers)")
    ap.add_argument("--dims", choices=sorted(DIMS), default="small", help="size of the random model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--segments", type=int, default=40, help="segments of the punctuation request")
    ap.add_argument("--summary-segments", type=int, default=120, help="segments of the map-reduce request")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--context", type=int, default=1024, help="context tokens (forces map-reduce)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--upstream-latency-ms", type=float, default=200.0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared CPU: see docs)")
    args = ap.parse_args()
    # OpenMP teams of 2+ threads spin on barriers when other processes hold the cores: on a busy
    # shared CPU that makes a tiny model 30-100x slower. Pin every thread's team size up front.
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import torch

    torch.set_num_threads(args.threads)
    from omoai_core.settings import load_settings
    from omoai_gpu.memory import MemoryPolicy
    from omoai_llm.app import create_app
    from omoai_llm.backends import load_backend
    from omoai_llm.settings import LlmSettings
    from prometheus_client import CollectorRegistry

    stack = contextlib.ExitStack()
    model = args.model
    env: dict[str, Any] = {}
    if args.backend == "openai":
        url = stack.enter_context(_serve(_fake_upstream(args.upstream_latency_ms / 1000)))
        model, env = "upstream", {"openai_base_url": url + "/v1"}
    elif model == "random":
        from omoai_llm.testing import write_tiny_model

        hidden, layers = DIMS[args.dims]
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        model = str(write_tiny_model(Path(tmp), hidden_size=hidden, layers=layers, context=8192))

    def settings(concurrency: int) -> LlmSettings:
        return load_settings(
            LlmSettings,
            backend=args.backend,
            model=model,
            device=args.device,
            context_tokens=args.context if args.backend == "transformers" else None,
            concurrency=concurrency,
            max_batch_size=max(concurrency, 1),
            summary_max_tokens=64,
            punct_chunk_tokens=128,
            request_timeout_s=3600,
            **env,
        )

    s = settings(args.concurrency)
    policy = MemoryPolicy.from_settings(s.device, s.dtype, debug_empty_cache=False, registry=CollectorRegistry())
    backend = asyncio.run(load_backend(s, model, policy)) if args.backend == "transformers" else None
    recorders: list[Recorder] = []

    async def loader(name: str) -> Any:
        inner = backend if backend is not None else await load_backend(s, name, policy)
        rec = Recorder(inner, shared=backend is not None)
        recorders.append(rec)
        return rec

    device = (
        "CUDA " + torch.cuda.get_device_name(0)
        if args.device.startswith("cuda")
        else f"CPU ({os.cpu_count()} cores, {args.threads} torch thread(s))"
    )
    print(
        f"backend={args.backend} model={args.model if args.model != 'random' else 'random ' + args.dims} "
        f"device={device} torch={torch.__version__} python={platform.python_version()}"
    )

    # -- 1. overhead ---------------------------------------------------------------------------
    segs = _segments(args.segments)
    rows = []
    with _serve(create_app(s, loader=loader)) as url, httpx.Client(base_url=url, timeout=3600) as client:
        client.post("/v1/punctuate", json={"segments": segs[:2]}).raise_for_status()  # warm-up
        for _ in range(args.repeats):
            rec = recorders[-1]
            rec.calls.clear()
            started = time.perf_counter()
            r = client.post("/v1/punctuate", json={"segments": segs})
            service_s = time.perf_counter() - started
            r.raise_for_status()
            calls = list(rec.calls)
            bare_s = asyncio.run(_replay(backend or _openai_bare(s, model), calls, args.concurrency))
            rows.append((service_s, bare_s, len(calls), r.json()["quality"]["words_in"]))
    service = statistics.median(r[0] for r in rows)
    bare = statistics.median(r[1] for r in rows)
    print("\n### Service overhead (POST /v1/punctuate vs the same calls on the bare backend)\n")
    print("| segments | words | model calls | bare backend | service (HTTP) | overhead |")
    print("|--:|--:|--:|--:|--:|--:|")
    print(
        f"| {args.segments} | {rows[0][3]} | {rows[0][2]} | {bare * 1000:.0f} ms | {service * 1000:.0f} ms "
        f"| {(service - bare) * 1000:+.0f} ms ({(service - bare) / bare * 100:+.1f} %) |"
    )

    # -- 1b. the service's own cost, with a backend that answers at once ----------------------
    counter = backend if backend is not None else _openai_bare(s, model)

    async def instant_loader(name: str) -> Any:
        return InstantBackend(counter)

    print("\n### Service cost per request with an instant backend (HTTP, validation, chunking, alignment)\n")
    print("| segments | words | model calls | time per request (median) | per 1000 words |")
    print("|--:|--:|--:|--:|--:|")
    with _serve(create_app(s, loader=instant_loader)) as url, httpx.Client(base_url=url, timeout=3600) as client:
        for n in (args.segments, args.segments * 10):
            payload = {"segments": _segments(n)}
            client.post("/v1/punctuate", json=payload).raise_for_status()
            times = []
            for _ in range(max(3, args.repeats)):
                started = time.perf_counter()
                r = client.post("/v1/punctuate", json=payload)
                times.append(time.perf_counter() - started)
                r.raise_for_status()
            t, words = statistics.median(times), r.json()["quality"]["words_in"]
            print(f"| {n} | {words} | {r.json()['chunks']} | {t * 1000:.0f} ms | {t * 1000 / words * 1000:.0f} ms |")

    # -- 2. map concurrency --------------------------------------------------------------------
    long = _segments(args.summary_segments)
    print("\n### Summary map-reduce: concurrent map calls vs sequential\n")
    print("| concurrency | map calls | map phase (median) | map speed-up | whole request (median) | speed-up |")
    print("|--:|--:|--:|--:|--:|--:|")
    from omoai_llm.prompts import load_prompts

    map_prompt = load_prompts().get("en", "summary_map")
    base: tuple[float, float] | None = None
    for conc in (1, args.concurrency):
        sc = settings(conc)
        times, maps, chunks = [], [], 0
        with _serve(create_app(sc, loader=loader)) as url, httpx.Client(base_url=url, timeout=3600) as client:
            for _ in range(args.repeats):
                rec = recorders[-1]
                rec.spans.clear()
                started = time.perf_counter()
                r = client.post("/v1/summarize", json={"segments": long, "language": "en"})
                times.append(time.perf_counter() - started)
                r.raise_for_status()
                assert r.json()["strategy"] == "map_reduce", r.json()
                chunks = r.json()["chunks"]
                spans = [(a, b) for system, a, b in rec.spans if system == map_prompt]
                maps.append(max(b for _, b in spans) - min(a for a, _ in spans))
        t, m = statistics.median(times), statistics.median(maps)
        base = base or (m, t)
        print(
            f"| {conc} | {chunks} | {m * 1000:.0f} ms | {base[0] / m:.2f}x | {t * 1000:.0f} ms | {base[1] / t:.2f}x |"
        )
    stack.close()


def _openai_bare(s: Any, model: str) -> Any:
    from omoai_llm.backends.openai_backend import OpenAIBackend

    return OpenAIBackend(model, s.openai_base_url, timeout_s=600)


if __name__ == "__main__":
    main()
