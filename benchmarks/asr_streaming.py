"""Live (incremental) decoding against the batch decode of the same audio, side by side in one run.

Measures, on a random checkpoint of the published large-vie size (CTC and transducer):

- throughput: N streams fed their audio in 0.5 s pieces and stepped together (masked batches
  across streams), in audio seconds per CPU second, against the batch decode (``transcribe``) of
  the same recordings one after another; the ratio is the number (target >= 0.5);
- time to the first committed text of a many-window recording, as a fraction of its whole decode
  (the SSE answer's first delta; target <= 0.2 for a 10-window recording);
- the memory one open stream holds (decoder state: caches, predictor state, features not yet
  consumed, collected path), at two stream lengths (target < 20 MiB, flat);
- that every stream's final transcript equals its batch transcript (a failed check exits 1).

``--realtime`` measures instead what a live client sees: N streams fed at real time (pieces of
``--piece-ms`` arriving on the wall clock) through the :class:`~omoai_asr.live.LiveScheduler`
(the path ``/v1/realtime`` uses, partial hypotheses on), for N = 1, 2, 4, ... while every stream
stays in real time, then 8 (if not reached) and a bounded bisection:

- lag: how long after the audio a window needs (its kept frames and right context) has arrived
  its commit is delivered, i.e. how far the decoded position trails the audio clock beyond the
  algorithmic latency of the decode options (printed); real time = largest lag under 2 s;
- latency from a word's audio arriving (its end) to the committed delta that holds it and to the
  first partial (or commit) covering it, p50/p95, at N = 1, 8 and the largest N in real time.

    .venv/bin/python benchmarks/asr_streaming.py --quick
    .venv/bin/python benchmarks/asr_streaming.py --device cuda --streams 1 8 32 64
    .venv/bin/python benchmarks/asr_streaming.py --realtime
    .venv/bin/python benchmarks/asr_streaming.py --realtime --device cuda --max-n 256 --rt-seconds 60

Decode settings: ``--chunk/--left/--right`` and ``--tbd`` (the window budget); the commit latency
they imply is printed (a window's right context, see docs/asr-engine.md). ``--realtime`` defaults
to a small window (chunk 8, left 16, right 4, ``--tbd`` 6: a window keeps 2.56 s) so that text is
committed during a short run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from omoai_asr.engine import ChunkFormerEngine, DecodeOptions


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def state_bytes(stream: object) -> int:
    """Bytes of the tensors and arrays an engine stream holds (its decoder state and buffers)."""
    from omoai_asr.engine.chunkformer import TranscriptStream
    from omoai_asr.engine.streaming import CtcCollector

    assert isinstance(stream, TranscriptStream)
    d = stream.decoder
    total = sum(t.numel() * t.element_size() for t in (d.feats, d.att_cache, d.conv_cache) if t is not None)
    head = d.head
    if isinstance(head, CtcCollector):
        total += sum(p.numel() * p.element_size() for p in head.paths)
    else:
        if head.state is not None:
            total += sum(t.numel() * t.element_size() for t in (head.state.h, head.state.c, head.state.pred_proj))
        total += sum(a.nbytes for a in head.tokens) + sum(a.nbytes for a in head.frames)
    total += sum(a.nbytes for a in stream._buffer)
    return total


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass
class Paced:
    """What N streams fed at real time saw (seconds; wall clock against the audio clock)."""

    streams: int
    lags: list[float] = field(default_factory=list)  # per commit: delivered after its audio arrived
    to_commit: list[float] = field(default_factory=list)  # per word: end arrived -> committed delta
    to_partial: list[float] = field(default_factory=list)  # per word: end arrived -> first partial covering it
    commits: int = 0  # windows committed while the audio was arriving (the end-of-stream commit excluded)
    cpu_s: float = 0.0  # CPU seconds of this process while the audio arrived and was committed
    wall_s: float = 0.0  # wall seconds the audio took to arrive

    def realtime(self, limit: float) -> bool:
        return bool(self.lags) and max(self.lags) < limit


async def paced(
    engine: ChunkFormerEngine,
    options: DecodeOptions,
    clips: Sequence[np.ndarray],
    *,
    piece_s: float,
    right_s: float,
    partial_interval_s: float = 0.5,
    max_buffered_s: float = 30.0,
) -> Paced:
    """Feed ``clips`` as live streams at real time through a :class:`LiveScheduler` and time the events.

    The scheduler decodes on one worker thread as in the service (the batcher's); the audio of a
    piece counts as arrived at its scheduled wall time (the end of the piece on the audio clock),
    so time a feed spends waiting (backpressure, a busy event loop) counts as lag. ``right_s`` is
    the right context of a window (``right_context_frames / 100``): a window ending at ``d`` can
    be committed once the audio up to ``d + right_s`` has arrived.
    """
    from omoai_asr.live import Committed, Final, LiveScheduler, Partial, StreamingEngine

    assert isinstance(engine, StreamingEngine)  # as the service's runtime checks it
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=1)
    live = LiveScheduler(
        engine,
        lambda fn: loop.run_in_executor(pool, fn),
        max_streams=len(clips),
        max_buffered_s=max_buffered_s,
        partial_interval_s=partial_interval_s,
    )
    live.start()
    step = max(1, int(piece_s * 16000))
    t0 = loop.time() + 0.05

    def arrived_at(clip: np.ndarray, seconds: float) -> float:
        """Wall time at which the piece holding the sample at ``seconds`` arrived."""
        sample = min(len(clip), max(1, int(np.ceil(seconds * 16000))))
        return t0 + min(len(clip), -(-sample // step) * step) / 16000

    result = Paced(len(clips))
    cpu = cpu_seconds()
    try:
        streams = [live.open(options, partials=True) for _ in clips]
        seen: list[list[tuple[float, object]]] = [[] for _ in clips]

        async def read(i: int) -> None:
            async for event in streams[i].events():
                seen[i].append((loop.time(), event))

        async def feed(i: int) -> None:
            clip = clips[i]
            for lo in range(0, len(clip), step):
                await asyncio.sleep(max(0.0, t0 + min(len(clip), lo + step) / 16000 - loop.time()))
                await streams[i].feed(clip[lo : lo + step])

        readers = [asyncio.create_task(read(i)) for i in range(len(clips))]
        await asyncio.gather(*(feed(i) for i in range(len(clips))))
        fed = [len(s) for s in seen]  # events up to here were produced while audio was arriving
        fed_at = loop.time()
        result.wall_s = fed_at - t0
        await asyncio.gather(*(s.commit() for s in streams))
        for s in streams:
            s.close()
        await asyncio.gather(*readers)
    finally:
        await live.stop()
        pool.shutdown()
    result.cpu_s = cpu_seconds() - cpu

    for clip, events, n_live in zip(clips, seen, fed, strict=True):
        (final,) = [e.transcript for _, e in events if isinstance(e, Final)]
        words = [w for s in final.segments for w in s.words]
        committed: list[tuple[float, float]] = []  # (when, audio seconds whose text is committed)
        covered: list[tuple[float, float]] = []  # (when, audio seconds a partial or commit covers)
        done = 0.0
        for when, event in events[:n_live]:
            if isinstance(event, Committed):
                committed.append((when, event.audio_seconds_done))
                covered.append((when, event.audio_seconds_done))
                if event.audio_seconds_done > done:
                    done = event.audio_seconds_done
                    result.lags.append(when - arrived_at(clip, done + right_s))
                    result.commits += 1
            elif isinstance(event, Partial):
                covered.append((when, event.audio_seconds))
        # The window after the last commit: if its audio had all arrived when feeding ended, it
        # trails by at least that long (a stream too far behind may have committed nothing).
        following = done + window_s(options) + right_s
        if following <= len(clip) / 16000:
            result.lags.append(max(0.0, fed_at - arrived_at(clip, following)))
        for word in words:
            arrived = arrived_at(clip, word.end)
            when_committed = next((t for t, c in committed if c >= word.end), None)
            if when_committed is not None:
                result.to_commit.append(when_committed - arrived)
            when_seen = next((t for t, c in covered if c >= word.end), None)
            if when_seen is not None:
                result.to_partial.append(when_seen - arrived)
    return result


def ready_after_s(right_frames: int) -> float:
    """Audio past a window's end that must arrive before it is decoded: its right context, the
    subsampling's 7 frames of context and the last fbank frame's 25 ms (``full_window_frames``)."""
    return (right_frames + 7) / 100 + (400 - 160) / 16000


def window_s(options: DecodeOptions) -> float:
    from omoai_asr.geometry import window_keep_frames

    return window_keep_frames(options) * 0.08


async def realtime_search(
    engine: ChunkFormerEngine,
    options: DecodeOptions,
    *,
    seconds: float,
    piece_s: float,
    right_s: float,
    limit: float,
    max_n: int,
    refine: int,
    partial_interval_s: float,
) -> tuple[list[Paced], int]:
    """Runs at N = 1, 2, 4, ... (<= ``max_n``) while in real time, then N = 8 if not run and up to
    ``refine`` bisection steps between the largest N in real time and the smallest one not;
    returns the runs in order and the largest N in real time (0: not even one stream)."""
    from omoai_asr.engine.testing import synthetic_speech

    runs: dict[int, Paced] = {}

    async def run(n: int) -> bool:
        clips = [synthetic_speech(seconds, seed=100 + i) for i in range(n)]
        runs[n] = await paced(
            engine, options, clips, piece_s=piece_s, right_s=right_s, partial_interval_s=partial_interval_s
        )
        return runs[n].realtime(limit)

    n, best, worst = 1, 0, None
    while n <= max_n:
        if not await run(n):
            worst = n
            break
        best, n = n, n * 2
    if 8 <= max_n and 8 not in runs:
        await run(8)
        if runs[8].realtime(limit) and best < 8:
            best = 8
    for _ in range(refine):
        if worst is None or worst - best <= 1:
            break
        mid = (best + worst) // 2
        if mid in runs:
            break
        if await run(mid):
            best = mid
        else:
            worst = mid
    return [runs[k] for k in sorted(runs)], best


def realtime_report(kind: str, runs: list[Paced], best: int, limit: float) -> None:
    print(
        "\n| model | streams | lag beyond algorithmic latency p50 / p95 / max | real time (max lag < "
        f"{limit:g} s) | word -> committed p50 / p95 | word -> first partial p50 / p95 | windows committed "
        "| CPU s / wall s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {kind} | {r.streams} | {percentile(r.lags, 50):.2f} / {percentile(r.lags, 95):.2f} / "
            f"{max(r.lags):.2f} s | {'yes' if r.realtime(limit) else 'NO'} | "
            f"{percentile(r.to_commit, 50):.2f} / {percentile(r.to_commit, 95):.2f} s | "
            f"{percentile(r.to_partial, 50):.2f} / {percentile(r.to_partial, 95):.2f} s | {r.commits} | "
            f"{r.cpu_s:.0f} / {r.wall_s:.0f} |"
        )
    print(f"largest N in real time ({kind}): {best} (lag under {limit:g} s beyond the algorithmic latency)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    p.add_argument("--kinds", nargs="+", default=["ctc", "transducer"], choices=["ctc", "transducer"])
    p.add_argument("--streams", nargs="+", type=int, default=[1, 4, 8], help="concurrent streams (N)")
    p.add_argument("--seconds", type=float, default=60.0, help="audio per stream")
    p.add_argument("--chunk", type=int, default=None, help="chunk size (default 16; --realtime 8)")
    p.add_argument("--left", type=int, default=None, help="left context (default 32; --realtime 16)")
    p.add_argument("--right", type=int, default=None, help="right context (default 16; --realtime 4)")
    p.add_argument(
        "--tbd",
        type=float,
        default=None,
        help="total_batch_duration: the window budget in s (default 60; --realtime 6)",
    )
    p.add_argument("--layers", type=int, default=None, help="encoder layers (default: large-vie's 17)")
    p.add_argument("--quick", action="store_true", help="a short run: N = 1 and 4, 120 s per stream")
    p.add_argument("--realtime", action="store_true", help="streams fed at real time through the live scheduler")
    p.add_argument("--rt-seconds", type=float, default=20.0, help="--realtime: audio per stream per run")
    p.add_argument("--piece-ms", type=float, default=160.0, help="--realtime: audio per piece a client sends")
    p.add_argument("--max-n", type=int, default=32, help="--realtime: the largest N tried")
    p.add_argument("--refine", type=int, default=1, help="--realtime: bisection steps after the doubling")
    p.add_argument("--lag-limit", type=float, default=2.0, help="--realtime: lag (s) beyond which N is not real time")
    p.add_argument(
        "--partial-interval", type=float, default=0.5, help="--realtime: least s between two partials of a stream"
    )
    args = p.parse_args()
    if args.quick:
        args.streams, args.seconds = [1, 4], 120.0
    for name, batch, live in (("chunk", 16, 8), ("left", 32, 16), ("right", 16, 4), ("tbd", 60.0, 6.0)):
        if getattr(args, name) is None:
            setattr(args, name, live if args.realtime else batch)

    from dataclasses import replace

    from omoai_asr.engine import ChunkFormerEngine, DecodeOptions
    from omoai_asr.engine.testing import LARGE_VIE, LARGE_VIE_RNNT, synthetic_speech, write_random_checkpoint
    from omoai_asr.engine.transcribe import right_context_frames
    from omoai_asr.geometry import window_keep_frames
    from omoai_gpu.memory import MemoryPolicy
    from prometheus_client import CollectorRegistry

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    options = DecodeOptions(args.chunk, args.left, args.right, args.tbd)
    print(f"# asr_streaming: device {device}, {args.threads} thread(s), options {options}")
    print("# the machine is a shared 2-core VM: CPU times are per process, ratios from one interleaved run")
    failed = False
    for kind in args.kinds:
        dims = LARGE_VIE_RNNT if kind == "transducer" else LARGE_VIE
        if args.layers:
            dims = replace(dims, n_layer=args.layers)
        with tempfile.TemporaryDirectory() as tmp:
            path = write_random_checkpoint(Path(tmp) / kind, dims)
            policy = MemoryPolicy(device, torch.float32, registry=CollectorRegistry())
            engine = ChunkFormerEngine.load(path, policy)
        keep = window_keep_frames(options)
        right = right_context_frames(options, dims.n_layer, dims.conv_context)
        print(f"\n## {kind}: {dims.n_layer} layers, width {dims.n_state}")
        print(
            f"window: {keep * 0.08:.2f} s kept; commit latency (right context) {right / 100:.2f} s + up to "
            f"{keep * 0.08:.2f} s"
        )
        engine.transcribe(synthetic_speech(1.0), options)  # warm-up
        if args.realtime:
            print(
                f"algorithmic latency: a word is committed {ready_after_s(right):.2f} s (right context) to "
                f"{ready_after_s(right) + keep * 0.08:.2f} s (+ the window) after its audio; pieces of {args.piece_ms:g} ms, "
                f"{args.rt_seconds:g} s per stream, partials every {args.partial_interval:g} s"
            )
            runs, best = asyncio.run(
                realtime_search(
                    engine,
                    options,
                    seconds=args.rt_seconds,
                    piece_s=args.piece_ms / 1000,
                    right_s=ready_after_s(right),
                    limit=args.lag_limit,
                    max_n=args.max_n,
                    refine=args.refine,
                    partial_interval_s=args.partial_interval,
                )
            )
            realtime_report(kind, runs, best, args.lag_limit)
            continue
        clips = [synthetic_speech(args.seconds, seed=i) for i in range(max(args.streams))]

        print("\n| streams | batch audio s / CPU s | live audio s / CPU s | live / batch | finals == batch |")
        print("|---|---|---|---|---|")
        for n in args.streams:
            batch_cpu = cpu_seconds()
            wants = [engine.transcribe(c, options) for c in clips[:n]]
            batch_cpu = cpu_seconds() - batch_cpu
            live_cpu = cpu_seconds()
            streams = [engine.open_stream(options) for _ in range(n)]
            piece = 8000
            for lo in range(0, len(clips[0]), piece):
                for s, c in zip(streams, clips[:n], strict=True):
                    s.push(c[lo : lo + piece])
                while any(s.has_ready_window for s in streams):
                    engine.step_streams(streams)
            finals = [None] * n
            while any(f is None for f in finals):
                for i, u in enumerate(engine.step_streams(streams, finish=[f is None for f in finals])):
                    if u.final is not None:
                        finals[i] = u.final
            live_cpu = cpu_seconds() - live_cpu
            same = all(f == w for f, w in zip(finals, wants, strict=True))
            failed |= not same
            audio = n * args.seconds
            print(
                f"| {n} | {audio / batch_cpu:.2f} | {audio / live_cpu:.2f} | {batch_cpu / live_cpu:.2f}x | "
                f"{'yes' if same else 'NO'} |"
            )

        # Time to first committed text of a 10-window recording vs its whole decode.
        ten = synthetic_speech(10 * keep * 0.08 + right / 100, seed=99)
        started = time.perf_counter()
        engine.transcribe(ten, options)
        whole = time.perf_counter() - started
        stream = engine.open_stream(options)
        started = time.perf_counter()
        first = None
        stream.push(ten)
        while stream.has_ready_window:
            (u,) = engine.step_streams([stream])
            if first is None and u.text_delta:
                first = time.perf_counter() - started
        while True:
            (u,) = engine.step_streams([stream], finish=[True])
            if first is None and u.text_delta:
                first = time.perf_counter() - started
            if u.final is not None:
                break
        total = time.perf_counter() - started
        first = first if first is not None else total
        print(
            f"\nfirst committed text of a {len(ten) / 16000:.0f} s recording ({len(stream.decoder.windows)} windows): "
            f"{first:.2f} s of {whole:.2f} s batch decode = {first / whole:.2f} (target <= 0.2)"
        )

        # Memory one open stream holds, at two lengths.
        sizes = []
        for seconds in (args.seconds / 2, args.seconds * 2):
            stream = engine.open_stream(options)
            clip = synthetic_speech(seconds, seed=5)
            peak = 0
            for lo in range(0, len(clip), 8000):
                stream.push(clip[lo : lo + 8000])
                while stream.has_ready_window:
                    engine.step_streams([stream])
                peak = max(peak, state_bytes(stream))
            sizes.append((seconds, peak))
        print(
            "state per open stream (peak): "
            + ", ".join(f"{s:.0f} s: {b / 2**20:.2f} MiB" for s, b in sizes)
            + " (target < 20 MiB, flat)"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
