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

    .venv/bin/python benchmarks/asr_streaming.py --quick
    .venv/bin/python benchmarks/asr_streaming.py --device cuda --streams 1 8 32 64

Decode settings: ``--chunk/--left/--right`` and ``--tbd`` (the window budget); the commit latency
they imply is printed (a window's right context, see docs/asr-engine.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch


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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    p.add_argument("--kinds", nargs="+", default=["ctc", "transducer"], choices=["ctc", "transducer"])
    p.add_argument("--streams", nargs="+", type=int, default=[1, 4, 8], help="concurrent streams (N)")
    p.add_argument("--seconds", type=float, default=60.0, help="audio per stream")
    p.add_argument("--chunk", type=int, default=16)
    p.add_argument("--left", type=int, default=32)
    p.add_argument("--right", type=int, default=16)
    p.add_argument("--tbd", type=float, default=60.0, help="total_batch_duration: the window budget (s)")
    p.add_argument("--layers", type=int, default=None, help="encoder layers (default: large-vie's 17)")
    p.add_argument("--quick", action="store_true", help="a short run: N = 1 and 4, 120 s per stream")
    args = p.parse_args()
    if args.quick:
        args.streams, args.seconds = [1, 4], 120.0

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
        clips = [synthetic_speech(args.seconds, seed=i) for i in range(max(args.streams))]
        engine.transcribe(clips[0][:16000], options)  # warm-up

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
