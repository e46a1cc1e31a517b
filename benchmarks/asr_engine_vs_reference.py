"""OMOAI's ChunkFormer engine against the reference implementation, side by side, in one run.

Both implementations decode the same 16 kHz WAV files with the same settings and the same random
checkpoint of the ``khanhld/chunkformer-large-vie`` architecture (17 blocks, width 512, 8 heads,
FFN 2048, kernel 15, vocab 6992; 113.9 M encoder+CTC parameters), written once in the official
checkpoint layout under ``.cache/``. Random weights give real speed and memory; the transcript
text is gibberish, but both sides must produce the same argmax path, which is checked.

Each (implementation, audio, settings) runs in its own subprocess (benchmarks/asr_engine_worker.py)
so that peak resident memory is that implementation's alone. The reference runs in its own
virtualenv (benchmarks/setup_reference.sh: PyPI chunkformer==1.2.2 with --no-deps on the same
torch, torchaudio's pure-Python kaldi.py under a stub package).

``--model transducer`` runs the same comparison on the transducer benchmark checkpoint
(``testing.write_benchmark_transducer``: the ``khanhld/chunkformer-rnnt-large-vie`` size, a joint
constructed to search like a trained model's on this benchmark's speech): both sides must emit the
same tokens on the same frames, and the search's blank share and emissions per frame are checked
on what was measured.

Usage:
    benchmarks/setup_reference.sh
    .venv/bin/python benchmarks/asr_engine_vs_reference.py --durations 60 600 --repeats 3
    .venv/bin/python benchmarks/asr_engine_vs_reference.py --model transducer --durations 60 600
    .venv/bin/python benchmarks/asr_engine_vs_reference.py --device cuda --durations 60 600 3600 \
        --encoder-repeats 5

Prints a markdown table: median wall time and real-time factor (audio seconds / wall seconds,
higher is faster) end to end, optionally encoder alone, peak RSS, peak GPU memory, and our/ref
ratios, with the targets checked.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "asr_engine_worker.py"
CACHE = ROOT / ".cache" / "bench" / "asr_engine"
DEFAULT_REFERENCE_PYTHON = ROOT / ".cache" / "refvenv" / "bin" / "python"
SAMPLE_RATE = 16000

# Issue 2's targets (issue 18's for the transducer: 2x).
CPU_RTF_RATIO_TARGET = {"ctc": 1.5, "transducer": 2.0}  # ours at least this times the reference's RTF
MEMORY_RATIO_TARGET = 0.5  # at most half the reference's peak memory
GPU_HOUR_E2E_TARGET_S = 0.5  # one hour, file to timestamped transcript
GPU_ENCODER_RTF_TARGET = 40_000.0
BLANK_FRACTION = 0.6  # of encoder frames, as in real speech with pauses

# Vietnamese text for espeak-ng; varied so that the audio is not one loop of one sentence.
_SENTENCES = (
    "Xin chào các bạn, hôm nay chúng ta nói về trí tuệ nhân tạo và cách nó thay đổi cuộc sống hằng ngày.",
    "Buổi họp sáng nay bàn về kế hoạch kinh doanh của công ty trong quý tới.",
    "Thời tiết ở Hà Nội hôm nay khá lạnh, nhiệt độ chỉ khoảng mười lăm độ.",
    "Các nhà khoa học đã phát hiện một loài cá mới ở vùng biển miền Trung.",
    "Học sinh cần chuẩn bị kỹ bài học trước khi đến lớp vào sáng thứ hai.",
    "Giá xăng dầu tăng nhẹ trong tuần này do ảnh hưởng của thị trường thế giới.",
    "Đội tuyển bóng đá quốc gia đã giành chiến thắng trong trận đấu tối qua.",
    "Chúng tôi rất vui được chào đón quý vị đến với chương trình phát thanh hôm nay.",
    "Người dân thành phố Hồ Chí Minh đổ ra đường đón chào năm mới.",
    "Bài giảng hôm nay giới thiệu về lịch sử phát triển của ngôn ngữ tiếng Việt.",
)


@dataclass(frozen=True)
class Settings:
    chunk_size: int
    left_context: int
    right_context: int
    total_batch_duration: float

    @property
    def label(self) -> str:
        tbd = f"{self.total_batch_duration:g}"
        return f"c{self.chunk_size}/l{self.left_context}/r{self.right_context}, tbd {tbd} s"

    def as_json(self) -> str:
        return json.dumps(self.__dict__)


# -- inputs -------------------------------------------------------------------------------------


def ensure_checkpoint(directory: Path, calibration_audio: Path) -> Path:
    """The random large-vie checkpoint in the official layout, written once.

    ``write_random_checkpoint`` calibrates the CTC head's blank bias on its own synthetic audio;
    on other audio a random encoder's outputs shift and blank may never win (one endless
    "sentence"). So the blank bias is re-calibrated on the benchmark's own speech, which gives
    realistic output: about 60 % blank frames, segments split at pauses, words to time-stamp.
    """
    if (directory / "pytorch_model.bin").is_file() and (directory / "config.yaml").is_file():
        return directory
    import torch
    from omoai_asr.engine import ChunkFormerEngine, DecodeOptions
    from omoai_asr.engine.testing import LARGE_VIE, write_random_checkpoint
    from omoai_audio import decode_audio
    from omoai_gpu.memory import MemoryPolicy
    from prometheus_client import CollectorRegistry

    print(f"writing a random large-vie checkpoint to {directory} ...", file=sys.stderr)
    tmp = directory.with_name(directory.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    write_random_checkpoint(tmp, LARGE_VIE, seed=0)
    policy = MemoryPolicy.from_settings("cpu", "fp32", debug_empty_cache=False, registry=CollectorRegistry())
    engine = ChunkFormerEngine.load(tmp, policy)
    samples = decode_audio(calibration_audio).samples
    enc = engine.decode_frames(samples, DecodeOptions(), keep_encoder_out=True).encoder_out  # (T', D)
    state = torch.load(tmp / "pytorch_model.bin", map_location="cpu", weights_only=True)
    weight, bias = state["ctc.ctc_lo.weight"], state["ctc.ctc_lo.bias"]
    with torch.no_grad():
        logits = enc @ weight.T + bias  # (T', V)
        margin = logits[:, 1:].max(dim=-1).values - logits[:, 0]
        bias[0] += torch.quantile(margin, BLANK_FRACTION).item()
    torch.save(state, tmp / "pytorch_model.bin")
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return directory


def ensure_transducer_checkpoint(directory: Path, calibration_audio: Path) -> Path:
    """The transducer benchmark checkpoint, its joint constructed on the benchmark's speech, written once
    (again when the construction's version differs from the cached copy's)."""
    from omoai_asr.engine.testing import BENCHMARK_TRANSDUCER_VERSION, write_benchmark_transducer
    from omoai_audio import decode_audio

    stamp = directory / "construction-version"
    if (
        (directory / "pytorch_model.bin").is_file()
        and (directory / "config.yaml").is_file()
        and stamp.is_file()
        and stamp.read_text().strip() == str(BENCHMARK_TRANSDUCER_VERSION)
    ):
        return directory

    print(f"writing the transducer benchmark checkpoint to {directory} ...", file=sys.stderr)
    tmp = directory.with_name(directory.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    write_benchmark_transducer(tmp, decode_audio(calibration_audio).samples)
    (tmp / "construction-version").write_text(f"{BENCHMARK_TRANSDUCER_VERSION}\n")
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return directory


def _write_wav(path: Path, samples: np.ndarray) -> None:
    tmp = path.with_suffix(".partial.wav")
    tmp.parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has no .cache/bench yet
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(samples.astype("<i2").tobytes())
    tmp.rename(path)


def _espeak_sentences() -> np.ndarray | None:
    """All sentences spoken by espeak-ng (Vietnamese), 16 kHz mono int16, with pauses between."""
    if shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None:
        return None
    parts: list[np.ndarray] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(_SENTENCES):
            raw = Path(tmp) / f"{i}.wav"
            out = Path(tmp) / f"{i}.s16"
            speed = str(130 + 10 * (i % 4))
            subprocess.run(
                ["espeak-ng", "-v", "vi", "-s", speed, "-w", str(raw), text], check=True, capture_output=True
            )
            subprocess.run(
                [
                    "ffmpeg",
                    "-v",
                    "error",
                    "-y",
                    "-i",
                    str(raw),
                    "-ac",
                    "1",
                    "-ar",
                    str(SAMPLE_RATE),
                    "-f",
                    "s16le",
                    str(out),
                ],
                check=True,
                capture_output=True,
            )
            parts.append(np.frombuffer(out.read_bytes(), dtype="<i2"))
            parts.append(np.zeros(int(SAMPLE_RATE * (0.3 + 0.25 * (i % 3))), dtype=np.int16))
    return np.concatenate(parts)


def speech_loop(directory: Path) -> np.ndarray | None:
    """The espeak-ng sentence loop, cached as ``espeak_loop.wav`` (carry it to a machine without
    espeak-ng, such as a GPU machine, to get the same audio there)."""
    path = directory / "espeak_loop.wav"
    if path.is_file():
        with wave.open(str(path), "rb") as w:
            return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    base = _espeak_sentences()
    if base is not None:
        _write_wav(path, base)
    return base


def ensure_audio(seconds: float, directory: Path) -> Path:
    """``seconds`` of Vietnamese speech (espeak-ng sentences in a loop, plus quiet noise).

    Without espeak-ng (and no cached loop), the engine's own speech-like synthesiser is used.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"speech_{seconds:g}s.wav"
    if path.is_file():
        return path
    n = round(seconds * SAMPLE_RATE)
    base = speech_loop(directory)
    if base is None:
        from omoai_asr.engine.testing import synthetic_speech

        print("espeak-ng not found: using synthetic speech-like audio", file=sys.stderr)
        samples = synthetic_speech(seconds, seed=1)
    else:
        reps = -(-n // base.size)
        samples = np.tile(base, reps)[:n].astype(np.float64)
        samples += np.random.default_rng(0).normal(0, 20, n)  # no digital silence
        samples = np.clip(samples, -32768, 32767).astype(np.int16)
    _write_wav(path, samples)
    return path


# -- running ------------------------------------------------------------------------------------


def run_worker(
    impl: str,
    python: Path,
    model_dir: Path,
    audio: Path,
    warmup: Path,
    settings: Settings,
    args: argparse.Namespace,
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        result_path = Path(fh.name)
    cmd = [
        str(python),
        str(WORKER),
        "--impl",
        impl,
        "--model-dir",
        str(model_dir),
        "--audio",
        str(audio),
        "--warmup-audio",
        str(warmup),
        "--settings",
        settings.as_json(),
        "--repeats",
        str(args.runs_per_round),
        "--encoder-repeats",
        str(args.encoder_repeats),
        "--device",
        args.device,
        "--dtype",
        args.dtype,
        "--threads",
        str(args.threads),
        "--result",
        str(result_path),
    ]
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(args.threads),
        MKL_NUM_THREADS=str(args.threads),
        TQDM_DISABLE="1",
        TOKENIZERS_PARALLELISM="false",
        TRANSFORMERS_VERBOSITY="error",
        HF_HUB_OFFLINE="1",
    )
    loadavg = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    try:
        if proc.returncode != 0:
            raise SystemExit(
                f"{impl} worker failed (exit {proc.returncode}) on {audio.name} [{settings.label}]:\n"
                f"{proc.stderr[-4000:]}"
            )
        result = json.loads(result_path.read_text(encoding="utf-8"))
    finally:
        result_path.unlink(missing_ok=True)
    result["wall_total_seconds"] = time.perf_counter() - t0
    result["loadavg_before"] = loadavg
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    result["warnings"] = warnings
    for line in warnings:
        print(line, file=sys.stderr)
    return result


def merge_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One implementation's rounds as one result: all timings, medians, the highest peaks."""
    merged = dict(runs[-1])
    paths = {tuple(r["argmax_path"]) for r in runs}
    if len(paths) != 1:
        print(f"warning: {merged['impl']}: the argmax path differs between rounds", file=sys.stderr)
    for key in ("e2e_seconds", "encoder_seconds"):
        merged[key] = [t for r in runs for t in r[key]]
        merged[key.replace("_seconds", "_median_seconds")] = statistics.median(merged[key]) if merged[key] else None
        merged[key.replace("_seconds", "_min_seconds")] = min(merged[key]) if merged[key] else None
    for key in ("peak_rss_mib", "peak_rss_with_encoder_runs_mib", "gpu_peak_bytes", "gpu_encoder_peak_bytes"):
        values = [r[key] for r in runs if r[key] is not None]
        merged[key] = max(values) if values else None
    n_runs = max(1, len(merged["e2e_seconds"]))
    for key in ("e2e_user_seconds", "e2e_sys_seconds", "e2e_minor_faults"):
        merged[key + "_per_run"] = sum(r[key] for r in runs) / n_runs
    merged["loadavg"] = [r["loadavg_before"] for r in runs]
    return merged


def compare_emissions(ours: list[list[int]] | None, ref: list[list[int]] | None) -> str:
    """Transducer: every (frame, token) emission, in order."""
    if ours is None or ref is None:
        return "DIFFERENT: emissions missing"
    pairs_ours, pairs_ref = list(zip(*ours, strict=True)), list(zip(*ref, strict=True))
    if pairs_ours == pairs_ref:
        return f"identical ({len(pairs_ours)} emissions)"
    diff = next((i for i, (a, b) in enumerate(zip(pairs_ours, pairs_ref, strict=False)) if a != b), None)
    return f"DIFFERENT: {len(pairs_ours)} vs {len(pairs_ref)} emissions, first difference at emission {diff}"


def search_verdicts(label: str, res: dict[str, Any]) -> list[str]:
    """Issue 18's properties of the benchmark checkpoint's search, on what was measured."""
    from omoai_asr.engine.testing import SearchProfile

    frames, _ = res["emissions"]
    return [profile_verdict(label, SearchProfile.of(np.asarray(frames, dtype=np.int64), len(res["argmax_path"])))]


def profile_verdict(label: str, profile: Any) -> str:
    """A ``testing.SearchProfile`` against its targets, as one verdict line."""
    blank_ok = profile.blank_share >= profile.MIN_BLANK_SHARE
    most_ok = profile.max_per_frame <= profile.MAX_PER_FRAME
    return (
        f"{label}: blank frame share {profile.blank_share:.3f} (target >= {profile.MIN_BLANK_SHARE}: "
        f"{'met' if blank_ok else 'NOT met'}); most emissions in a frame {profile.max_per_frame} "
        f"(target <= {profile.MAX_PER_FRAME}: {'met' if most_ok else 'NOT met'})"
    )


def compare_paths(ours: list[int], ref: list[int]) -> str:
    if ours == ref:
        return f"identical ({len(ours)} frames)"
    n = min(len(ours), len(ref))
    diff = sum(1 for a, b in zip(ours, ref, strict=False) if a != b) + abs(len(ours) - len(ref))
    return f"DIFFERENT: {diff} of {max(len(ours), len(ref))} frames (lengths {len(ours)} vs {len(ref)}, compared {n})"


# -- reporting ----------------------------------------------------------------------------------


def _fmt_s(x: float | None) -> str:
    return "-" if x is None else (f"{x:.3f}" if x < 10 else f"{x:.1f}")


def _fmt_rtf(x: float | None) -> str:
    return "-" if x is None else (f"{x:,.0f}x" if x >= 100 else f"{x:.1f}x")


def _fmt_mib(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def summarise(rows: list[dict[str, Any]], cuda: bool, model: str = "ctc") -> tuple[str, list[str]]:
    """The markdown table and the target verdicts."""
    head = [
        "audio",
        "settings",
        "impl",
        "end-to-end s, median (best)",
        "RTF (median)",
        "RTF ours/ref",
        "peak RSS MiB",
        "RSS ours/ref",
    ]
    if any(r["ours"]["encoder_median_seconds"] is not None for r in rows):
        head += ["encoder-alone s", "encoder RTF", "encoder ours/ref"]
    if cuda:
        head += ["peak GPU MiB", "GPU ours/ref"]
    head += ["same argmax path" if model == "ctc" else "same emissions"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    verdicts: list[str] = []
    for r in rows:
        ours, ref = r["ours"], r["reference"]
        audio_s = ours["audio_seconds"]
        for name, res, other in (("ours", ours, ref), ("reference", ref, ours)):
            rtf = audio_s / res["e2e_median_seconds"]
            cells = [
                f"{audio_s:g} s",
                r["settings"].label,
                name,
                f"{_fmt_s(res['e2e_median_seconds'])} ({_fmt_s(res['e2e_min_seconds'])})",
                _fmt_rtf(rtf),
            ]
            if other is None or name == "reference":
                cells += ["", _fmt_mib(res["peak_rss_mib"]), ""]
            else:
                cells += [
                    f"{_ratio(other['e2e_median_seconds'], res['e2e_median_seconds']):.2f}x",
                    _fmt_mib(res["peak_rss_mib"]),
                    f"{_ratio(res['peak_rss_mib'], other['peak_rss_mib']):.2f}",
                ]
            if "encoder-alone s" in head:
                enc = res["encoder_median_seconds"]
                cells += [_fmt_s(enc), _fmt_rtf(None if enc is None else audio_s / enc)]
                ratio = _ratio(other["encoder_median_seconds"], enc) if name == "ours" else None
                cells += ["" if ratio is None else f"{ratio:.2f}x"]
            if cuda:
                gpu = res["gpu_peak_bytes"]
                cells += [_fmt_mib(None if gpu is None else gpu / 2**20)]
                ratio = _ratio(gpu, other["gpu_peak_bytes"]) if name == "ours" else None
                cells += ["" if ratio is None else f"{ratio:.2f}"]
            cells += [r["fidelity"] if name == "ours" else ""]
            lines.append("| " + " | ".join(cells) + " |")

        label = f"{audio_s:g} s [{r['settings'].label}]"
        rtf_ratio = _ratio(ref["e2e_median_seconds"], ours["e2e_median_seconds"])
        mem_ratio = _ratio(ours["peak_rss_mib"], ref["peak_rss_mib"])
        if not cuda:
            rtf_target = CPU_RTF_RATIO_TARGET[model]
            verdicts.append(
                f"{label}: RTF ours/ref {rtf_ratio:.2f}x (target >= {rtf_target}x: "
                f"{'met' if rtf_ratio >= rtf_target else 'NOT met'}); peak RSS ours/ref {mem_ratio:.2f} "
                f"(target <= {MEMORY_RATIO_TARGET}: {'met' if mem_ratio <= MEMORY_RATIO_TARGET else 'NOT met'})"
            )
        else:
            gpu_ratio = _ratio(ours["gpu_peak_bytes"], ref["gpu_peak_bytes"])
            gpu_ok = "met" if gpu_ratio <= MEMORY_RATIO_TARGET else "NOT met"
            parts = [f"{label}: peak GPU ours/ref {gpu_ratio:.2f} (target <= {MEMORY_RATIO_TARGET}: {gpu_ok})"]
            if ours["encoder_median_seconds"]:
                enc_rtf = audio_s / ours["encoder_median_seconds"]
                parts.append(
                    f"encoder alone {enc_rtf:,.0f}x real time (target >= {GPU_ENCODER_RTF_TARGET:,.0f}x: "
                    f"{'met' if enc_rtf >= GPU_ENCODER_RTF_TARGET else 'NOT met'})"
                )
            if audio_s >= 3600:
                per_hour = ours["e2e_median_seconds"] * 3600 / audio_s
                parts.append(
                    f"one hour end to end {per_hour:.3f} s (target <= {GPU_HOUR_E2E_TARGET_S} s: "
                    f"{'met' if per_hour <= GPU_HOUR_E2E_TARGET_S else 'NOT met'})"
                )
            verdicts.append("; ".join(parts))
        if model == "transducer":
            verdicts += search_verdicts(label, ours)
        if not r["fidelity"].startswith("identical"):
            verdicts.append(f"{label}: FIDELITY: the outputs differ: {r['fidelity']}")
    return "\n".join(lines), verdicts


def _git_describe() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "services/asr/src/omoai_asr/engine", "libs"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return rev + (" (engine/libs with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    p.add_argument("--durations", type=float, nargs="+", default=[60.0, 600.0], help="audio lengths in seconds")
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="rounds per case: each starts one fresh process per implementation and times one "
        "end-to-end run (median reported)",
    )
    p.add_argument(
        "--runs-per-round",
        type=int,
        default=None,
        help="timed end-to-end runs in each process (default: 1 on CPU; 3 on CUDA, after a warm-up on the same file)",
    )
    p.add_argument(
        "--encoder-repeats",
        type=int,
        default=None,
        help="timed encoder-alone runs per round (default: 0 on CPU, 3 on CUDA)",
    )
    p.add_argument(
        "--model",
        choices=("ctc", "transducer"),
        default="ctc",
        help="ctc: a random chunkformer-large-vie checkpoint; transducer: the transducer benchmark "
        "checkpoint (chunkformer-rnnt-large-vie size, searching like a trained model)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (both implementations)")
    p.add_argument(
        "--dtype",
        choices=("fp32", "fp16", "bf16"),
        default="fp32",
        help="compute dtype; the reference gets it through torch.autocast",
    )
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for both")
    p.add_argument("--chunk-size", type=int, default=64)
    p.add_argument("--left-context", type=int, default=128)
    p.add_argument("--right-context", type=int, default=128)
    p.add_argument(
        "--total-batch-duration",
        type=float,
        nargs="+",
        default=[1800.0],
        help="one or more window budgets in seconds (1800: 600 s in one window)",
    )
    p.add_argument(
        "--reference-python",
        type=Path,
        default=DEFAULT_REFERENCE_PYTHON,
        help="python of the reference virtualenv (benchmarks/setup_reference.sh)",
    )
    p.add_argument("--ours-python", type=Path, default=Path(sys.executable))
    p.add_argument("--only", choices=("ours", "reference"), help="run one side only (no comparison)")
    p.add_argument("--json", type=Path, help="also write every raw result here")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if args.encoder_repeats is None:
        args.encoder_repeats = 3 if cuda else 0
    if args.runs_per_round is None:
        args.runs_per_round = 3 if cuda else 1
    if args.only != "ours" and not args.reference_python.is_file():
        p.error(
            f"no reference python at {args.reference_python}: run benchmarks/setup_reference.sh first "
            "or pass --reference-python"
        )

    speech_loop(CACHE / "audio")  # cached first, so that it can be carried elsewhere
    warmup = ensure_audio(8.0, CACHE / "audio")
    calibration = ensure_audio(60.0, CACHE / "audio")
    if args.model == "transducer":
        model_dir = ensure_transducer_checkpoint(CACHE / "chunkformer-rnnt-large-vie-benchmark", calibration)
    else:
        model_dir = ensure_checkpoint(CACHE / "chunkformer-large-vie-random", calibration)
    audios = [ensure_audio(d, CACHE / "audio") for d in args.durations]
    settings_list = [
        Settings(args.chunk_size, args.left_context, args.right_context, tbd) for tbd in args.total_batch_duration
    ]

    impls = [args.only] if args.only else ["reference", "ours"]
    pythons = {"ours": args.ours_python, "reference": args.reference_python}
    rows: list[dict[str, Any]] = []
    for audio in audios:
        for settings in settings_list:
            # One process per implementation and round, rounds interleaved (and the order
            # alternated), so that load from other work on a shared machine hits both sides alike.
            runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in impls}
            for round_ in range(args.repeats):
                for impl in impls if round_ % 2 == 0 else impls[::-1]:
                    print(
                        f"[{round_ + 1}/{args.repeats}] {impl} on {audio.name} [{settings.label}] ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    # CPU: an 8 s warm-up is enough. CUDA: warm up at the timed shapes (cuBLAS
                    # heuristics, allocator growth), which costs little there.
                    res = run_worker(impl, pythons[impl], model_dir, audio, audio if cuda else warmup, settings, args)
                    runs[impl].append(res)
                    print(
                        f"  {res['e2e_seconds'][0]:.2f} s, peak RSS {res['peak_rss_mib']:.0f} MiB, "
                        f"load avg {res['loadavg_before']:.2f}",
                        file=sys.stderr,
                        flush=True,
                    )
            results = {impl: merge_runs(rs) for impl, rs in runs.items()}
            if len(results) == 2:
                if args.model == "transducer":
                    fidelity = compare_emissions(results["ours"]["emissions"], results["reference"]["emissions"])
                else:
                    fidelity = compare_paths(results["ours"]["argmax_path"], results["reference"]["argmax_path"])
                rows.append({"settings": settings, "fidelity": fidelity, **results})
            else:
                rows.append({"settings": settings, **results})

    first = rows[0][impls[0]]
    device_desc = first["device_name"] or f"{_cpu_name()}, {os.cpu_count()} logical CPUs"
    print(f"\nASR engine vs reference ChunkFormer, {dt.date.today().isoformat()}, commit {_git_describe()}")
    print(
        f"device {args.device} ({device_desc}), dtype {args.dtype}, torch {first['torch']}, "
        f"{args.threads} threads, {args.repeats} rounds x {args.runs_per_round} timed runs per case (median), "
        "model: "
        + (
            "transducer benchmark checkpoint (chunkformer-rnnt-large-vie size)"
            if args.model == "transducer"
            else "random chunkformer-large-vie architecture"
        )
    )
    if args.only:
        for r in rows:
            res = r[args.only]
            rtf = res["audio_seconds"] / res["e2e_median_seconds"]
            print(
                f"- {res['audio_seconds']:g} s [{r['settings'].label}]: {res['e2e_median_seconds']:.3f} s "
                f"({rtf:.1f}x real time), peak RSS {res['peak_rss_mib']:.0f} MiB"
            )
            if args.model == "transducer":
                for v in search_verdicts(f"{res['audio_seconds']:g} s [{r['settings'].label}]", res):
                    print(f"- {v}")
    else:
        table, verdicts = summarise(rows, args.device.startswith("cuda"), args.model)
        print()
        print(table)
        print()
        for v in verdicts:
            print(f"- {v}")
    print("\nCPU time per end-to-end run (user / system; system time is mostly page faults on fresh memory):")
    for r in rows:
        for impl in impls:
            res = r[impl]
            print(
                f"- {res['audio_seconds']:g} s [{r['settings'].label}] {impl}: "
                f"{res['e2e_user_seconds_per_run']:.1f} s / {res['e2e_sys_seconds_per_run']:.1f} s, "
                f"{res['e2e_minor_faults_per_run'] / 1e3:,.0f}k minor faults; "
                f"1-min load average before each round: {', '.join(f'{x:.1f}' for x in res['loadavg'])}"
            )
    if args.json:
        serialisable = [
            {**{k: v for k, v in r.items() if k != "settings"}, "settings": r["settings"].__dict__} for r in rows
        ]
        args.json.write_text(json.dumps(serialisable, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
