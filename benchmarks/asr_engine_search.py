"""The transducer's greedy search against its encoder, on the transducer benchmark checkpoint.

Issue 18's target: on CPU the greedy search takes at most 25 % of the encoder's time (60 s and
600 s of speech, 2 threads and 1 thread) on ``testing.write_benchmark_transducer``'s checkpoint
(the ``khanhld/chunkformer-rnnt-large-vie`` size, a joint constructed to search like a trained
model's on this benchmark's speech), emissions unchanged.

In one process, per (audio, threads): the encoder (``transcribe._encode``, one window, as
``endless_decode`` runs it at the default budget) and then the search under each tuning (the
levers), interleaved over ``--repeats`` rounds (medians). Every lever must produce exactly the
same emissions; the search's blank share and emissions per frame are checked on what was
measured. Audio and checkpoint are those of ``asr_engine_vs_reference.py --model transducer``
(cached under ``.cache/bench/asr_engine``).

    .venv/bin/python benchmarks/asr_engine_search.py --durations 60 600 --threads 2 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asr_engine_vs_reference import CACHE, ensure_audio, ensure_transducer_checkpoint, profile_verdict  # noqa: E402

SEARCH_SHARE_TARGET = 0.25  # search time / encoder time


def levers() -> dict[str, object]:
    from omoai_asr.engine.transducer import ACCELERATOR_TUNING, CPU_TUNING, SearchTuning

    return {
        "fixed look-ahead 4 (before)": SearchTuning(lookahead=4, max_lookahead=4, check_every=1, masked_updates=False),
        "fixed look-ahead 32": SearchTuning(lookahead=32, max_lookahead=32, check_every=1, masked_updates=False),
        "accelerator branch (masked, 32)": ACCELERATOR_TUNING,
        "adaptive look-ahead 4..32": replace(CPU_TUNING, cpu_threads=None),
        "adaptive 4..32, search on 1 thread (default)": CPU_TUNING,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__)
    p.add_argument("--durations", type=float, nargs="+", default=[60.0, 600.0])
    p.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median reported)")
    p.add_argument("--quick", action="store_true", help="60 s, 2 threads, 1 round")
    args = p.parse_args(argv)
    if args.quick:
        args.durations, args.threads, args.repeats = [60.0], [2], 1

    from omoai_asr.engine import ChunkFormerEngine, DecodeOptions
    from omoai_asr.engine.testing import SearchProfile
    from omoai_asr.engine.transcribe import _encode
    from omoai_asr.engine.transducer import greedy_search, project_encoder
    from omoai_audio import decode_audio
    from omoai_gpu.memory import MemoryPolicy
    from prometheus_client import CollectorRegistry

    model_dir = ensure_transducer_checkpoint(
        CACHE / "chunkformer-rnnt-large-vie-benchmark", ensure_audio(60.0, CACHE / "audio")
    )
    policy = MemoryPolicy.from_settings("cpu", "fp32", debug_empty_cache=False, registry=CollectorRegistry())
    engine = ChunkFormerEngine.load(model_dir, policy)
    model = engine.model
    tunings = levers()
    print(f"model: transducer benchmark checkpoint ({model_dir.name}), CPU fp32, {args.repeats} rounds (median)")
    head = ["audio", "threads", "frames", "blank frames", "most per frame", "encoder s"]
    head += [f"{name}: search s (/ encoder)" for name in tunings]
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    verdicts = []
    for seconds in args.durations:
        feats = engine.features(decode_audio(ensure_audio(seconds, CACHE / "audio")).samples)
        for threads in args.threads:
            torch.set_num_threads(threads)
            enc_times: list[float] = []
            search_times: dict[str, list[float]] = {name: [] for name in tunings}
            found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            with torch.inference_mode():
                for round_ in range(args.repeats):
                    t0 = time.perf_counter()
                    (enc,), _, _, _ = _encode(model, [(feats, 0)], DecodeOptions(), None, None, 0)
                    enc_times.append(time.perf_counter() - t0)
                    projected = project_encoder(model, enc)[None]
                    lengths = torch.tensor([enc.size(0)])
                    names = list(tunings) if round_ % 2 == 0 else list(tunings)[::-1]
                    for name in names:
                        t0 = time.perf_counter()
                        (emissions,), _ = greedy_search(model, projected, lengths, tuning=tunings[name])  # type: ignore[arg-type]
                        search_times[name].append(time.perf_counter() - t0)
                        found[name] = (emissions.tokens, emissions.frames)
            reference = found[list(tunings)[0]]
            for name, (tokens, frames) in found.items():
                if not (np.array_equal(tokens, reference[0]) and np.array_equal(frames, reference[1])):
                    raise SystemExit(f"{name}: emissions differ from {list(tunings)[0]}'s")
            profile = SearchProfile.of(reference[1], enc.size(0))
            encoder = statistics.median(enc_times)
            cells = [
                f"{seconds:g} s",
                str(threads),
                str(profile.n_frames),
                f"{profile.blank_share * 100:.1f} %",
                str(profile.max_per_frame),
                f"{encoder:.2f}",
            ]
            for name in tunings:
                search = statistics.median(search_times[name])
                cells.append(f"{search:.3f} ({search / encoder:.2f})")
            print("| " + " | ".join(cells) + " |", flush=True)
            default = statistics.median(search_times[list(tunings)[-1]]) / encoder
            label = f"{seconds:g} s, {threads} thread(s)"
            verdicts.append(
                f"{label}: search / encoder {default:.2f} (target <= {SEARCH_SHARE_TARGET}: "
                f"{'met' if default <= SEARCH_SHARE_TARGET else 'NOT met'})"
            )
            verdicts.append(profile_verdict(label, profile))
    print()
    for v in verdicts:
        print(f"- {v}")
    print("- every lever produced identical emissions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
