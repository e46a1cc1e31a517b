"""One implementation's side of benchmarks/asr_engine_vs_reference.py, in its own process.

Runs under *either* interpreter: ours (the repo's .venv, ``--impl ours``) or the reference's
virtualenv (``--impl reference``, where only torch and chunkformer exist). So this file imports
nothing from OMOAI at module level and nothing of chunkformer either; each side's imports live in
its own class.

For one audio file and one set of decoding settings it measures, after loading the model:

- **end to end**: audio file -> timestamped transcript, ``--repeats`` times (the reference's
  ``ChunkFormerModel.endless_decode(path, ...)`` including its pydub loading and Kaldi fbank;
  ours ``omoai_audio.decode_audio(path)`` + ``ChunkFormerEngine.transcribe(samples, options)``);
- **encoder alone** (``--encoder-repeats``): fbank features already on the device (the
  reference applies CMVN inside its encoder, ours before it) -> CTC argmax path per encoder frame, i.e. encoder windows plus the CTC head, without audio
  loading, fbank or text post-processing (the reference's own ``endless_decode`` loop with its
  feature loader replaced by the precomputed features and no vocabulary, ours
  ``transcribe.endless_decode``);
- peak resident memory of this process (``VmHWM``) and, on CUDA, peak allocated memory
  (``torch.cuda.max_memory_allocated``) over the timed runs.

The argmax path (token id per 80 ms encoder frame; for a transducer the first search step's) is
captured with a pass-through wrapper at the same seam on both sides and written out, so the driver
can check that both produce the same output; for a transducer also every emission (frame, token). The result is one JSON object written to ``--result``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import sys
import time
import wave
from collections.abc import Callable, Iterator
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # the reference draws a progress bar per window

import torch

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM).

    Not ``getrusage(...).ru_maxrss``: Linux carries the parent's high-water mark across fork and
    exec into it, so a child of a large driver process would report the driver's memory.
    """
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # not Linux: KiB (macOS: bytes)


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _wav_seconds(path: str) -> float:
    with wave.open(path, "rb") as w:
        return w.getnframes() / w.getframerate()


class Reference:
    """PyPI chunkformer==1.2.2 as its README shows it: from_pretrained, then endless_decode."""

    def __init__(self, model_dir: str, device: torch.device, dtype: torch.dtype) -> None:
        import chunkformer.chunkformer_model as cfm
        from chunkformer import ChunkFormerModel

        self._cfm = cfm
        self.device = device
        self.dtype = dtype
        self.model = ChunkFormerModel.from_pretrained(model_dir).to(device).eval()
        self.last_path: list[int] | None = None
        self.last_emissions: list[list[int]] | None = None
        original = cfm.get_output_with_timestamps

        def capture(hyps: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if hyps.dim() == 3 and hyps.size(-1) > 1:  # transducer: (1, T, n_steps), 0 after the blank
                grid = hyps[0]
                self.last_path = grid[:, 0].tolist()
                frames, steps = grid.nonzero(as_tuple=True)
                self.last_emissions = [frames.tolist(), grid[frames, steps].tolist()]
            else:
                self.last_path = hyps.reshape(-1).tolist()
            return original(hyps, *args, **kwargs)

        cfm.get_output_with_timestamps = capture  # pass-through: records the argmax path

    @contextlib.contextmanager
    def _precision(self) -> Iterator[None]:
        # The reference has no dtype option; a reduced dtype is what a user would do: autocast.
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            yield

    def transcribe_file(self, path: str, s: dict[str, Any]) -> tuple[int, float | None]:
        with self._precision():
            segments = self.model.endless_decode(
                path,
                chunk_size=s["chunk_size"],
                left_context_size=s["left_context"],
                right_context_size=s["right_context"],
                total_batch_duration=s["total_batch_duration"],
                return_timestamps=True,
            )
        last_end = _hms_to_seconds(segments[-1]["end"]) if segments else None
        return len(segments), last_end

    def features(self, path: str) -> tuple[torch.Tensor, int]:
        return self.model._load_audio_and_extract_features(path)

    def encode(self, feats: tuple[torch.Tensor, int], s: dict[str, Any]) -> torch.Tensor:
        """Precomputed fbank -> argmax path, through the reference's own window loop."""
        model = self.model
        char_dict, model.char_dict = model.char_dict, None  # no text: returns the argmax tensor
        model._load_audio_and_extract_features = lambda _path: feats  # type: ignore[method-assign]
        try:
            with self._precision():
                return model.endless_decode(
                    "<precomputed>",
                    chunk_size=s["chunk_size"],
                    left_context_size=s["left_context"],
                    right_context_size=s["right_context"],
                    total_batch_duration=s["total_batch_duration"],
                )
        finally:
            model.char_dict = char_dict
            del model._load_audio_and_extract_features


def _hms_to_seconds(stamp: str) -> float:
    h, m, s, ms = (int(x) for x in stamp.split(":"))
    return h * 3600 + m * 60 + s + ms / 1000.0


class Ours:
    """OMOAI's engine as the ASR service runs it: decode_audio, then ChunkFormerEngine.transcribe."""

    def __init__(self, model_dir: str, device: torch.device, dtype: str) -> None:
        from omoai_asr.engine import ChunkFormerEngine, DecodeOptions
        from omoai_asr.engine.streaming import endless_decode
        from omoai_audio import decode_audio
        from omoai_gpu.memory import MemoryPolicy
        from prometheus_client import CollectorRegistry

        self._decode_audio = decode_audio
        self._options_cls = DecodeOptions
        self._endless_decode = endless_decode
        self.device = device
        policy = MemoryPolicy.from_settings(str(device), dtype, debug_empty_cache=False, registry=CollectorRegistry())
        self.engine = ChunkFormerEngine.load(model_dir, policy)
        self.last_path: list[int] | None = None
        self.last_emissions: list[list[int]] | None = None
        decode_frames = self.engine.decode_frames

        def capture(*args: Any, **kwargs: Any) -> Any:
            result = decode_frames(*args, **kwargs)
            self.last_path = result.frame_tokens  # numpy array: converted to a list after timing
            if result.emissions is not None:
                self.last_emissions = [result.emissions.frames.tolist(), result.emissions.tokens.tolist()]
            return result

        self.engine.decode_frames = capture  # type: ignore[method-assign]  # pass-through

    def _options(self, s: dict[str, Any]) -> Any:
        return self._options_cls(
            chunk_size=s["chunk_size"],
            left_context=s["left_context"],
            right_context=s["right_context"],
            total_batch_duration=s["total_batch_duration"],
        )

    def transcribe_file(self, path: str, s: dict[str, Any]) -> tuple[int, float | None]:
        audio = self._decode_audio(path)
        transcript = self.engine.transcribe(audio.samples, self._options(s))
        segments = transcript.segments
        return len(segments), (segments[-1].end if segments else None)

    def features(self, path: str) -> torch.Tensor:
        return self.engine.features(self._decode_audio(path).samples)

    def encode(self, feats: torch.Tensor, s: dict[str, Any]) -> torch.Tensor:
        engine = self.engine
        return torch.from_numpy(self._endless_decode(engine.model, feats, self._options(s), engine.policy).frame_tokens)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", choices=("ours", "reference"), required=True)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--audio", required=True)
    p.add_argument("--warmup-audio", help="a short file decoded once before timing")
    p.add_argument(
        "--settings", required=True, help="JSON: chunk_size, left_context, right_context, total_batch_duration"
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--encoder-repeats", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=sorted(_DTYPES), default="fp32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--result", required=True, help="where to write the JSON result")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    settings = json.loads(args.settings)
    device = torch.device(args.device)
    audio_s = _wav_seconds(args.audio)

    rss_before_load = _current_rss_mib()
    t_load, impl = _timed(
        lambda: (
            Reference(args.model_dir, device, _DTYPES[args.dtype])
            if args.impl == "reference"
            else Ours(args.model_dir, device, args.dtype)
        ),
        device,
    )
    rss_after_load = _current_rss_mib()
    if args.warmup_audio:
        impl.transcribe_file(args.warmup_audio, settings)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    gpu_weights = torch.cuda.memory_allocated(device) if device.type == "cuda" else None

    e2e: list[float] = []
    n_segments, last_end = 0, None
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(args.repeats):
        seconds, (n_segments, last_end) = _timed(lambda: impl.transcribe_file(args.audio, settings), device)
        e2e.append(seconds)
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    path = impl.last_path
    path_list = [int(t) for t in (path.tolist() if hasattr(path, "tolist") else path or [])]
    e2e_gpu_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    e2e_peak_rss = _peak_rss_mib()

    enc: list[float] = []
    enc_gpu_peak = None
    if args.encoder_repeats > 0:
        feats = impl.features(args.audio)
        impl.encode(feats, settings)  # warm-up at this exact shape
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.encoder_repeats):
            seconds, enc_path = _timed(lambda: impl.encode(feats, settings), device)
            enc.append(seconds)
        enc_path_list = enc_path.reshape(-1).tolist()
        if enc_path_list != path_list:
            print(f"warning: {args.impl}: encoder-alone path differs from the end-to-end path", file=sys.stderr)
        enc_gpu_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None

    result = {
        "impl": args.impl,
        "audio_seconds": audio_s,
        "settings": settings,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_seconds": t_load,
        "e2e_seconds": e2e,
        "e2e_median_seconds": statistics.median(e2e) if e2e else None,
        "encoder_seconds": enc,
        "encoder_median_seconds": statistics.median(enc) if enc else None,
        "rss_before_load_mib": rss_before_load,
        "rss_after_load_mib": rss_after_load,
        "peak_rss_mib": e2e_peak_rss,  # over load, warm-up and the end-to-end runs
        "peak_rss_with_encoder_runs_mib": _peak_rss_mib(),
        "gpu_weights_bytes": gpu_weights,
        "gpu_peak_bytes": e2e_gpu_peak,
        "gpu_encoder_peak_bytes": enc_gpu_peak,
        # CPU time and page faults of the end-to-end runs: system time is mostly the kernel
        # zeroing freshly mapped pages for large temporaries.
        "e2e_user_seconds": usage1.ru_utime - usage0.ru_utime,
        "e2e_sys_seconds": usage1.ru_stime - usage0.ru_stime,
        "e2e_minor_faults": usage1.ru_minflt - usage0.ru_minflt,
        "n_segments": n_segments,
        "last_segment_end": last_end,
        "argmax_path": path_list,
        # transducer: [frames, tokens] of every emission in order (None for CTC)
        "emissions": impl.last_emissions,
    }
    with open(args.result, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
