#!/usr/bin/env python3
"""``make gpu-check``: every GPU claim of OMOAI checked by one command, with one report.

On a machine with one NVIDIA GPU, Python 3.12 and a CUDA PyTorch, and no package registry (what
else it needs travels in ``.whl/``, built here by ``make gpu-bundle``), it runs eight steps, each
in its own process so that a failure (an exception, a crash, a timeout) is reported while the
others still run:

1. fidelity on CUDA in fp32: the shared reference fixtures (CTC and transducer; every long-form
   and batch entry) decoded with exactly the reference's decisions, encoder outputs within 1e-3;
2. bf16 under the memory policy's autocast against fp32: share of identical frames and texts;
3. the memory policy on CUDA: cache clears per window (0 by default, 1 with the debug switch, read
   from the service's own counter); peak allocated/reserved memory of a one-hour decode;
4. the transducer search without per-frame host synchronisation (PyTorch's sync debug mode);
5. speed side by side with the reference chunkformer 1.2.2 (``benchmarks/asr_engine_vs_reference.py``),
   one hour file -> transcript, encoder alone, peak GPU memory, fp32 and bf16;
6. the ASR service on the GPU under 32 concurrent requests: batch occupancy and throughput;
7. the LLM service's transformers backend with a tiny model: a model switch clears the cache once
   (counted), punctuation and summary answer;
8. diarization of 10 minutes: time and speakers.

It writes ``gpu-check.md`` and ``gpu-check.json`` into ``$OUT`` (or ``--out``), naming the GPU, the
driver, torch and the date. ``--device cpu`` runs the same steps at small sizes (the test suite
does, so this script cannot rot between GPU loans); there, CUDA-only measurements are reported as
not applicable and step 5 only checks that the benchmark still takes the arguments used here.

    make gpu-check                                  # on the GPU machine (python3 there)
    .venv/bin/python scripts/gpu_check.py --device cpu --out out/gpu-check
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import wave
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / ".whl"
FIXTURES = ROOT / "tests" / "data" / "chunkformer"
SOURCES = [ROOT, *sorted(ROOT.glob("libs/*/src")), *sorted(ROOT.glob("services/*/src"))]
ENCODER_TOL = 1e-3
SAMPLE_RATE = 16000
STEP_NAMES = {
    1: "fidelity, fp32",
    2: "bf16 against fp32",
    3: "memory policy",
    4: "transducer search synchronisations",
    5: "speed against the reference",
    6: "ASR service, 32 concurrent requests",
    7: "LLM service, transformers backend",
    8: "diarization",
}
# The whole check's wall-clock budget: a GPU loan's command may run 10 minutes, and the report
# must be written before that; steps that would start with less than MIN_STEP_S left are skipped.
BUDGET_S = {"cuda": 540.0, "cpu": 1200.0}
MIN_STEP_S = 20.0
# Targets the GPU numbers are judged against (issue 21; docs/benchmarks.md).
TARGET_HOUR_E2E_S = 0.5
TARGET_ENCODER_RTF = 40_000.0
TARGET_PEAK_RATIO = 0.5


@dataclass(frozen=True)
class Sizes:
    """What each step does on one device: full sizes on CUDA, small ones on CPU (the test suite)."""

    long_decode_s: float  # step 3: peak memory of this long a decode
    large_model: bool  # steps 3 and 6: the large-vie architecture (else the tiny test one)
    all_entries: bool  # steps 1-2: every fixture entry (else each fixture's short clip, one setting)
    service_clip_s: float  # step 6: seconds of audio per request
    diarization_s: float  # step 8
    step_timeout_s: float


SIZES = {
    "cuda": Sizes(3600.0, True, True, 30.0, 600.0, 300.0),
    "cpu": Sizes(10.0, False, False, 1.0, 12.0, 240.0),
}


# -- the parent: environment, one process per step, the report ------------------------------------


def _missing(modules: list[str]) -> list[str]:
    code = "import importlib.util,sys;print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))"
    out = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True, check=True)
    return out.stdout.split()


def prepare_environment(work: Path, *, reference_needed: bool) -> tuple[dict[str, str], Path | None, list[str]]:
    """The child environment (our sources on the path, the bundle installed where the image lacks a
    package) and a python for the reference, if its bundle is here. Returns notes for the report."""
    notes: list[str] = []
    paths = [str(p) for p in SOURCES]
    needed = ["pydantic", "pydantic_settings", "fastapi", "uvicorn", "starlette", "multipart"]
    if (missing := _missing(needed)) and (BUNDLE / "ours").is_dir():
        site = work / "site"
        try:
            _pip_target(sorted((BUNDLE / "ours").glob("*.whl")), site)
            paths.insert(0, str(site))
            notes.append(f"installed the bundle's wheels for {', '.join(missing)}")
        except subprocess.CalledProcessError as e:
            notes.append(f"the bundle's wheels did not install: {e.stderr.strip()[-300:]}")
    elif missing:
        notes.append(f"missing {', '.join(missing)} and no .whl/ours bundle: run `make gpu-bundle` here first")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("OMOAI_")}
    if (BUNDLE / "assets" / "speaker_encoder.pt").is_file():
        env["OMOAI_DIARIZATION_ENCODER_PATH"] = str(BUNDLE / "assets" / "speaker_encoder.pt")
        env["OMOAI_DIARIZATION_VAD_PATH"] = str(BUNDLE / "assets" / "silero_vad_v6.onnx")
    reference: Path | None = None
    if not reference_needed:
        return env, None, notes
    if (BUNDLE / "ref").is_dir():
        site = work / "ref-site"
        try:
            _pip_target(sorted((BUNDLE / "ref").glob("*.whl")), site)
        except subprocess.CalledProcessError as e:
            notes.append(f"the reference's wheels did not install: {e.stderr.strip()[-300:]}")
            return env, None, notes
        reference = work / "reference-python"
        ref_path = os.pathsep.join([str(site), str(BUNDLE / "refstub")])
        reference.write_text(f'#!/bin/sh\nPYTHONPATH={ref_path} exec {sys.executable} "$@"\n', encoding="utf-8")
        reference.chmod(0o755)
    elif (ROOT / ".cache" / "refvenv" / "bin" / "python").is_file():
        reference = ROOT / ".cache" / "refvenv" / "bin" / "python"
    return env, reference, notes


def _pip_target(wheels: list[Path], target: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    cmd += ["--disable-pip-version-check", "--target", str(target), *map(str, wheels)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def machine_facts(device: str) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "host": platform.node(),
        "device": device,
    }
    with contextlib.suppress(Exception):
        facts["commit"] = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    with contextlib.suppress(Exception):
        import torch

        facts["torch"] = torch.__version__
        facts["torch_cuda"] = torch.version.cuda
        if device == "cuda" and torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name(0)
            facts["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    if shutil.which("nvidia-smi"):
        with contextlib.suppress(Exception):
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
            facts["gpu"], facts["driver"] = (s.strip() for s in out.splitlines()[0].split(",", 1))
    facts.setdefault("gpu", "none")
    facts.setdefault("driver", "none")
    return facts


def run_step(step: int, args: argparse.Namespace, env: dict[str, str], work: Path, left: float) -> dict[str, Any]:
    """One step in its own process, within the time left; whatever happens, a result comes back."""
    result_file = work / f"step{step}.json"
    log_file = work / f"step{step}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run-step", str(step), "--device", args.device]
    cmd += ["--work", str(work), "--result", str(result_file)]
    started = time.monotonic()
    timeout = args.step_timeout or (SPEED_TIMEOUT_S if step == 5 else SIZES[args.device].step_timeout_s)
    timeout = min(timeout, left)
    with log_file.open("w") as log:
        try:
            proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False)
            rc: int | str = proc.returncode
        except subprocess.TimeoutExpired:
            rc = f"timed out after {timeout:.0f} s"
    seconds = time.monotonic() - started
    tail = log_file.read_text(errors="replace")[-3000:]
    if result_file.is_file():
        result: dict[str, Any] = json.loads(result_file.read_text())
    else:
        result = {"status": "failed", "summary": f"the step's process ended without a result (exit {rc})"}
    if result["status"] != "passed":
        result["log_tail"] = tail
    result.update(step=step, name=STEP_NAMES[step], seconds=round(seconds, 1))
    return result


def markdown(facts: dict[str, Any], notes: list[str], results: list[dict[str, Any]]) -> str:
    lines = [
        f"## `make gpu-check` on {facts['gpu']} ({facts['device']})",
        "",
        f"{facts['date']}; GPU {facts['gpu']}, driver {facts['driver']}; torch {facts.get('torch')} "
        f"(CUDA {facts.get('torch_cuda')}); Python {facts['python']}; commit {facts.get('commit', '?')}.",
    ]
    lines += [f"- {n}" for n in notes]
    lines += ["", "| step | status | s | result |", "|---|---|--:|---|"]
    for r in results:
        summary = str(r["summary"]).replace("|", "/").replace("\n", " ")
        lines.append(f"| {r['step']}. {r['name']} | {r['status']} | {r['seconds']} | {summary} |")
    for r in results:
        if r.get("table") or r.get("log_tail"):
            lines += ["", f"### {r['step']}. {r['name']}", ""]
        if r.get("table"):
            lines.append(r["table"])
        if r.get("log_tail"):
            lines += ["```", r["log_tail"].strip()[-1500:], "```"]
    return "\n".join(lines) + "\n"


def write_reports(out: Path, facts: dict[str, Any], notes: list[str], results: list[dict[str, Any]]) -> None:
    """Both reports; rewritten after every step, so a run cut short still leaves one."""
    doc = {"machine": facts, "notes": notes, "steps": results}
    (out / "gpu-check.json").write_text(json.dumps(doc, indent=1, default=str))
    (out / "gpu-check.md").write_text(markdown(facts, notes, results))


def main_parent(args: argparse.Namespace) -> int:
    out = Path(args.out or os.environ.get("OUT") or ROOT / "out" / "gpu-check")
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    budget = args.budget if args.budget is not None else BUDGET_S[args.device]
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        needs_reference = args.device == "cuda" and 5 in args.steps
        env, reference, notes = prepare_environment(work, reference_needed=needs_reference)
        if reference is not None:
            env["OMOAI_GPU_CHECK_REFERENCE_PYTHON"] = str(reference)
        facts = machine_facts(args.device)
        results: list[dict[str, Any]] = []
        for step in args.steps:
            left = budget - (time.monotonic() - started)
            if left < MIN_STEP_S:
                result = {"step": step, "name": STEP_NAMES[step], "status": "skipped", "seconds": 0.0}
                result["summary"] = f"not started: {budget:.0f} s budget of the whole check spent"
            else:
                result = run_step(step, args, env, work, left)
            print(f"[gpu-check] step {step} {result['name']}: {result['status']} ({result['seconds']} s)", flush=True)
            results.append(result)
            facts["wall_seconds"] = round(time.monotonic() - started, 1)
            write_reports(out, facts, notes, results)
    notes.append(f"whole check: {facts['wall_seconds']} s wall (budget {budget:.0f} s)")
    write_reports(out, facts, notes, results)
    print((out / "gpu-check.md").read_text())
    return 0 if all(r["status"] in ("passed", "not applicable") for r in results) else 1


# -- the steps (each runs in a child process) -------------------------------------------------------


class StepFailed(Exception):
    """A check inside a step did not hold; the step reports it and the others go on."""


def _torch_device(device: str) -> Any:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise StepFailed("CUDA is not available to torch")
    return torch.device(device)


def _policy(device: str, dtype: str = "fp32", *, debug: bool = False) -> Any:
    import torch
    from omoai_gpu.memory import MemoryPolicy
    from prometheus_client import CollectorRegistry

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    return MemoryPolicy(_torch_device(device), dtypes[dtype], debug_empty_cache=debug, registry=CollectorRegistry())


def _fixture_entries(sizes: Sizes, *, chunk64_only: bool = False) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """The fixtures' endless entries: all of them (CUDA), only chunk 64 (CUDA, step 2: fp32 and
    bf16 both decode each one twice), or each fixture's short clip at one setting (CPU)."""
    for fixture in ("small", "wide_k31", "rnnt_small"):
        doc = json.loads((FIXTURES / fixture / "expected" / "expected.json").read_text(encoding="utf-8"))
        for key, entry in doc["endless_decode"].items():
            if sizes.all_entries and (not chunk64_only or "__c64_" in key):
                yield fixture, key, entry
            elif not sizes.all_entries and key == "short__c64_l128_r128_tbd1800":
                yield fixture, key, entry


def _options(entry: dict[str, Any]) -> Any:
    from omoai_asr.engine import DecodeOptions

    return DecodeOptions(
        chunk_size=int(entry["chunk_size"]),
        left_context=int(entry["left_context_size"]),
        right_context=int(entry["right_context_size"]),
        total_batch_duration=float(entry["total_batch_duration"]),
    )


def _clip(fixture: str, key: str) -> Any:
    from tests.support.diarization_corpus import read_wav

    return read_wav(FIXTURES / fixture / "audio" / f"{key.split('__')[0]}.wav")


def _frames(result: Any) -> list[int]:
    """The per-frame decision: the CTC argmax path, or each frame's first transducer step."""
    return [int(t) for t in result.frame_tokens.tolist()]


def step_fidelity(device: str, sizes: Sizes) -> dict[str, Any]:
    import numpy as np
    from omoai_asr.engine import ChunkFormerEngine

    from tests.support.reference_arrays import expected_array

    engines: dict[str, Any] = {}
    checked, bad, worst = 0, [], 0.0
    for fixture, key, entry in _fixture_entries(sizes):
        if fixture not in engines:
            engines[fixture] = ChunkFormerEngine.load(FIXTURES / fixture / "model", _policy(device))
        engine = engines[fixture]
        result = engine.decode_frames(_clip(fixture, key), _options(entry), keep_encoder_out=True)
        want = expected_array(FIXTURES / fixture, entry["encoder_out_file"])
        diff = float(np.abs(result.encoder_out.numpy() - want).max()) if result.encoder_out.shape == want.shape else 1e9
        worst = max(worst, diff)
        if "argmax_path" in entry:
            same = _frames(result) == entry["argmax_path"]
        else:
            same = result.emissions is not None and result.emissions.tokens.tolist() == entry["tokens"]
            same = same and engine.transcribe(_clip(fixture, key), _options(entry)).text == entry["text"]
        if not same or diff >= ENCODER_TOL:
            bad.append(f"{fixture}/{key} (decisions {'equal' if same else 'DIFFER'}, encoder max diff {diff:.2e})")
        checked += 1
    batches = 0
    for fixture in engines if sizes.all_entries else ():
        doc = json.loads((FIXTURES / fixture / "expected" / "expected.json").read_text(encoding="utf-8"))
        for key, entry in doc["batch_decode"].items():
            names = [a.split("/")[-1].removesuffix(".wav") for a in entry["audios"]]
            clips = [_clip(fixture, name) for name in names]
            for name, result in zip(names, engines[fixture].decode_frames_batch(clips, _options(entry)), strict=True):
                if "argmax_paths" in entry:
                    same = _frames(result) == entry["argmax_paths"][name]
                else:
                    same = result.emissions is not None and result.emissions.tokens.tolist() == entry["hyps"][name]
                if not same:
                    bad.append(f"{fixture}/batch {key}/{name} (decisions DIFFER)")
                batches += 1
    summary = (
        f"{checked} long-form decodes and {batches} batched utterances; decisions equal in "
        f"{checked + batches - len(bad)}; worst encoder diff {worst:.2e}"
    )
    if bad:
        raise StepFailed(summary + "; failing: " + "; ".join(bad[:8]))
    return {"status": "passed", "summary": summary, "data": {"entries": checked, "worst_encoder_diff": worst}}


def step_bf16(device: str, sizes: Sizes) -> dict[str, Any]:
    from omoai_asr.engine import ChunkFormerEngine

    rows, frames_same, frames_all, texts_same, texts_all = [], 0, 0, 0, 0
    engines: dict[tuple[str, str], Any] = {}
    for fixture, key, entry in _fixture_entries(sizes, chunk64_only=True):
        for dtype in ("fp32", "bf16"):
            if (fixture, dtype) not in engines:
                engines[fixture, dtype] = ChunkFormerEngine.load(FIXTURES / fixture / "model", _policy(device, dtype))
        clip, options = _clip(fixture, key), _options(entry)
        a = engines[fixture, "fp32"].decode_frames(clip, options)
        b = engines[fixture, "bf16"].decode_frames(clip, options)
        same = sum(x == y for x, y in zip(_frames(a), _frames(b), strict=True))
        text_same = engines[fixture, "fp32"].transcribe(clip, options).text == (
            engines[fixture, "bf16"].transcribe(clip, options).text
        )
        frames_same, frames_all = frames_same + same, frames_all + len(_frames(a))
        texts_same, texts_all = texts_same + text_same, texts_all + 1
        rows.append(f"| {fixture} | {key} | {same}/{len(_frames(a))} | {'yes' if text_same else 'no'} |")
    share = frames_same / max(frames_all, 1)
    table = "\n".join(["| fixture | entry | identical frames | identical text |", "|---|---|--:|---|", *rows])
    summary = f"identical frames {share:.1%} ({frames_same}/{frames_all}), identical texts {texts_same}/{texts_all}"
    data = {"frame_agreement": share, "texts_same": texts_same, "texts": texts_all}
    return {"status": "passed", "summary": summary + " (reported, not asserted)", "table": table, "data": data}


def _checkpoint(work: Path, sizes: Sizes) -> Path:
    """The random checkpoint of steps 3 and 6 (written once per run, shared through ``work``)."""
    from omoai_asr.engine.testing import LARGE_VIE, TINY, write_random_checkpoint

    name = "large-vie" if sizes.large_model else "tiny"
    directory = work / f"checkpoint-{name}"
    if not (directory / "config.yaml").is_file():
        write_random_checkpoint(directory, LARGE_VIE if sizes.large_model else TINY)
    return directory


def step_memory(device: str, sizes: Sizes, work: Path) -> dict[str, Any]:
    import torch
    from omoai_asr.engine import ChunkFormerEngine, DecodeOptions
    from omoai_asr.engine.testing import synthetic_speech

    model = _checkpoint(work, sizes)
    clip = synthetic_speech(30.0, seed=3)
    windowed = DecodeOptions(64, 128, 128, 11.0)  # 30 s -> several windows
    clears = {}
    for debug in (False, True):
        policy = _policy(device, debug=debug)
        engine = ChunkFormerEngine.load(model, policy)
        windows = len(engine.decode_frames(clip, windowed).windows)
        clears[debug] = (policy.clears("debug_per_window"), windows)
        del engine
    default_ok = clears[False][0] == 0
    debug_ok = clears[True][0] == clears[True][1]
    policy = _policy(device)
    engine = ChunkFormerEngine.load(model, policy)
    long_clip = synthetic_speech(sizes.long_decode_s, seed=4)
    engine.transcribe(long_clip[: SAMPLE_RATE * 5])  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    transcript = engine.transcribe(long_clip)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak: dict[str, Any] = {}
    memory = "peak GPU memory n/a on CPU"
    if device == "cuda":
        peak = {
            "allocated_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
            "reserved_mib": round(torch.cuda.max_memory_reserved() / 2**20, 1),
        }
        memory = f"peak allocated {peak['allocated_mib']} MiB, reserved {peak['reserved_mib']} MiB"
    summary = (
        f"cache clears per window: default {clears[False][0]:.0f} over {clears[False][1]} windows, "
        f"debug switch {clears[True][0]:.0f} over {clears[True][1]}; {sizes.long_decode_s:.0f} s decode in "
        f"{seconds:.2f} s ({len(transcript.segments)} segments), {memory}"
    )
    if not (default_ok and debug_ok):
        raise StepFailed(summary)
    data = {"clears": {str(k): v for k, v in clears.items()}, "decode_seconds": seconds, "peak": peak}
    return {"status": "passed", "summary": summary, "data": data}


def step_transducer_sync(device: str, sizes: Sizes) -> dict[str, Any]:
    import warnings

    import torch
    from omoai_asr.engine import ChunkFormerEngine
    from omoai_asr.engine.transducer import greedy_search, project_encoder

    from tests.support.reference_arrays import expected_array

    fixture = "rnnt_small"
    doc = json.loads((FIXTURES / fixture / "expected" / "expected.json").read_text(encoding="utf-8"))
    key = "long__c64_l128_r128_tbd1800" if sizes.all_entries else "short__c64_l128_r128_tbd1800"
    entry = doc["endless_decode"][key]
    model = ChunkFormerEngine.load(FIXTURES / fixture / "model", _policy(device)).model
    enc = torch.from_numpy(expected_array(FIXTURES / fixture, entry["encoder_out_file"])).to(device)
    frames = enc.size(0)
    with torch.inference_mode():
        projected = project_encoder(model, enc)[None]
        lengths = torch.tensor([frames], device=device)
        greedy_search(model, projected, lengths)  # warm-up
        syncs: int | str = "n/a on CPU (sync debug mode is CUDA's)"
        if device == "cuda":
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    (found,), _ = greedy_search(model, projected, lengths)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            syncs = sum("synchroniz" in str(w.message).lower() for w in caught)
        else:
            (found,), _ = greedy_search(model, projected, lengths)
    same = found.tokens.tolist() == entry["tokens"]
    summary = f"{frames} frames, {len(entry['tokens'])} emissions; host synchronisations during the search: {syncs}"
    if isinstance(syncs, int):
        summary += f" ({syncs / frames:.3f} per frame)"
    summary += f"; emissions {'equal to' if same else 'DIFFERENT from'} the reference"
    if not same or (isinstance(syncs, int) and syncs * 4 > frames):
        raise StepFailed(summary + " (target: far fewer than one synchronisation per frame)")
    return {"status": "passed", "summary": summary, "data": {"frames": frames, "syncs": syncs}}


BENCH = ROOT / "benchmarks" / "asr_engine_vs_reference.py"
SPEED_TIMEOUT_S = 420.0  # step 5 only: two benchmark runs, the first writing a large-vie checkpoint
BENCH_FLAGS = (
    "--device",
    "--durations",
    "--repeats",
    "--runs-per-round",
    "--encoder-repeats",
    "--dtype",
    "--json",
    "--reference-python",
)


def step_speed(device: str, sizes: Sizes, work: Path) -> dict[str, Any]:
    helptext = subprocess.run([sys.executable, str(BENCH), "--help"], capture_output=True, text=True, check=True)
    missing = [f for f in BENCH_FLAGS if f not in helptext.stdout]
    if missing:
        raise StepFailed(f"{BENCH.name} no longer takes {missing}")
    transducer = "transducer" in helptext.stdout
    if device != "cuda":
        return {
            "status": "not applicable",
            "summary": f"CPU mode: {BENCH.name} takes every argument this step uses "
            f"(transducer mode {'present' if transducer else 'absent'}); the comparison runs on CUDA only",
        }
    reference = os.environ.get("OMOAI_GPU_CHECK_REFERENCE_PYTHON")
    if not reference:
        raise StepFailed("no reference: build the bundle with `make gpu-bundle` (or benchmarks/setup_reference.sh)")
    tables, data = [], {}
    for dtype in ("fp32", "bf16"):
        raw = work / f"speed-{dtype}.json"
        cmd = [sys.executable, str(BENCH), "--device", "cuda", "--durations", "3600", "--repeats", "1"]
        cmd += ["--runs-per-round", "1", "--encoder-repeats", "2", "--dtype", dtype]
        cmd += ["--reference-python", reference, "--json", str(raw)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SPEED_TIMEOUT_S / 2)
        tables.append(f"**{dtype}**\n\n" + proc.stdout.strip())
        if proc.returncode != 0:
            raise StepFailed(f"{dtype} benchmark exited {proc.returncode}: {proc.stderr[-800:]}")
        data[dtype] = json.loads(raw.read_text()) if raw.is_file() else None
    note = "" if transducer else "; the benchmark has no transducer mode in this checkout (CTC only)"
    summary = (
        f"one hour, CTC, fp32 and bf16 against chunkformer 1.2.2 (tables below); targets: file -> transcript "
        f"<= {TARGET_HOUR_E2E_S} s, encoder >= {TARGET_ENCODER_RTF:,.0f}x real time, peak GPU memory <= "
        f"{TARGET_PEAK_RATIO} of the reference's{note}"
    )
    return {"status": "passed", "summary": summary, "table": "\n\n".join(tables), "data": data}


@contextlib.contextmanager
def _server(args: list[str], env: dict[str, str], log: Path, ready: str = "/readyz") -> Iterator[str]:
    from tests.support.processes import free_port, running_process

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    full_env = {**os.environ, "OMOAI_LOG_LEVEL": "WARNING", **env}
    with running_process(
        [sys.executable, "-m", *args, "--host", "127.0.0.1", "--port", str(port)],
        name=args[0],
        log=log,
        env=full_env,
        ready_url=url + ready,
        timeout_s=240,
    ):
        yield url


def _wav_bytes(samples: Any) -> bytes:
    import io

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


def _metric_sum(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, flags=re.M))


def step_service(device: str, sizes: Sizes, work: Path) -> dict[str, Any]:
    import httpx
    from omoai_asr.engine.testing import synthetic_speech

    model = _checkpoint(work, sizes)
    requests = 32
    clips = [_wav_bytes(synthetic_speech(sizes.service_clip_s, seed=10 + i)) for i in range(requests)]
    args = ["omoai_asr", "serve", "--model", str(model), "--device", device, "--max-batch-size", "32"]
    args += ["--max-concurrency", "32", "--batch-window-ms", "50"]
    env = {"OMOAI_TORCH_THREADS": "1"} if device == "cpu" else {}
    with _server(args, env, work / "asr-service.log") as url, httpx.Client(base_url=url, timeout=600) as client:
        form = {"model": client.get("/v1/models").json()["data"][0]["id"]}

        def call(body: bytes) -> httpx.Response:
            return client.post("/v1/audio/transcriptions", files={"file": ("w.wav", body, "audio/wav")}, data=form)

        one = call(clips[0])
        if one.status_code != 200:
            raise StepFailed(f"warm-up request answered {one.status_code}: {one.text[:300]}")
        before = client.get("/metrics").text

        started = time.perf_counter()
        with ThreadPoolExecutor(requests) as pool:
            codes = [r.status_code for r in pool.map(call, clips)]
        wall = time.perf_counter() - started
        after = client.get("/metrics").text
    batches = _metric_sum(after, "omoai_asr_batch_size_count") - _metric_sum(before, "omoai_asr_batch_size_count")
    decoded = _metric_sum(after, "omoai_asr_batch_size_sum") - _metric_sum(before, "omoai_asr_batch_size_sum")
    occupancy = decoded / batches if batches else 0.0
    audio = requests * sizes.service_clip_s
    summary = (
        f"{requests} concurrent requests of {sizes.service_clip_s:.0f} s: {codes.count(200)} answered 200 in "
        f"{wall:.2f} s ({audio / wall:.0f}x real time, {requests / wall:.1f} requests/s); {batches:.0f} engine "
        f"batches, mean occupancy {occupancy:.1f} requests per batch"
    )
    if codes.count(200) != requests:
        raise StepFailed(summary)
    data = {"wall_s": wall, "batches": batches, "occupancy": occupancy, "rtf": audio / wall}
    return {"status": "passed", "summary": summary, "data": data}


def step_llm(device: str, sizes: Sizes, work: Path) -> dict[str, Any]:
    import httpx
    from omoai_llm.testing import write_tiny_model

    punct = write_tiny_model(work / "llm-a", seed=0)
    summary_model = write_tiny_model(work / "llm-b", seed=1, chat_template=False)
    args = ["omoai_llm", "serve", "--backend", "transformers", "--model", str(punct)]
    args += ["--summary-model", str(summary_model), "--single-model-resident", "--device", device]
    env = {"OMOAI_SUMMARY_MAX_TOKENS": "24", "OMOAI_TOPICS_MAX_TOKENS": "24", "OMP_NUM_THREADS": "1"}
    texts = ["xin chào các bạn hôm nay chúng ta nói về trí tuệ nhân tạo", "cảm ơn các bạn đã lắng nghe"]
    segments = [{"text": t, "start": 3.0 * i, "end": 3.0 * i + 2.9} for i, t in enumerate(texts)]
    with _server(args, env, work / "llm-service.log") as url, httpx.Client(base_url=url, timeout=600) as client:
        started = time.perf_counter()
        answer = client.post("/v1/postprocess", json={"segments": segments})
        seconds = time.perf_counter() - started
        metrics = client.get("/metrics").text
    if answer.status_code != 200:
        raise StepFailed(f"/v1/postprocess answered {answer.status_code}: {answer.text[:300]}")
    body = answer.json()
    clears = _metric_sum(metrics, 'omoai_gpu_cache_clears_total\\{reason="model_switch"\\}')
    switches = _metric_sum(metrics, "omoai_llm_model_switches_total")
    punctuated = len(body.get("segments", [])) == len(segments)
    has_summary = bool(body.get("summary"))
    summary = (
        f"/v1/postprocess in {seconds:.2f} s: {len(body.get('segments', []))} punctuated segments, summary "
        f"{'present' if has_summary else 'MISSING'}; {switches:.0f} model switches, {clears:.0f} cache clears "
        "(model_switch)"
    )
    if not (punctuated and has_summary and switches >= 1 and clears == switches):
        raise StepFailed(summary + " (expected one clear per switch)")
    return {"status": "passed", "summary": summary, "data": {"switches": switches, "clears": clears}}


DIARIZATION_CLIP = ROOT / "tests" / "data" / "diarization" / "quick-3spk-100"


def step_diarization(device: str, sizes: Sizes) -> dict[str, Any]:
    import numpy as np
    from omoai_asr.diarization.pipeline import EmbeddingDiarizer
    from omoai_asr.diarization.types import DiarizationOptions

    clip = _diarization_clip()
    speakers = len({line.split()[7] for line in DIARIZATION_CLIP.with_suffix(".rttm").read_text().splitlines()})
    repeats = int(np.ceil(sizes.diarization_s * SAMPLE_RATE / len(clip)))
    samples = np.tile(clip, repeats)[: int(sizes.diarization_s * SAMPLE_RATE)]
    env = os.environ
    encoder = Path(env["OMOAI_DIARIZATION_ENCODER_PATH"]) if "OMOAI_DIARIZATION_ENCODER_PATH" in env else None
    vad = Path(env["OMOAI_DIARIZATION_VAD_PATH"]) if "OMOAI_DIARIZATION_VAD_PATH" in env else None
    diarizer = EmbeddingDiarizer.load(_policy(device), encoder_path=encoder, vad_path=vad)
    diarizer.diarize(samples[: SAMPLE_RATE * 10], DiarizationOptions())  # warm-up
    started = time.perf_counter()
    found = diarizer.diarize(samples, DiarizationOptions())
    seconds = time.perf_counter() - started
    summary = (
        f"{sizes.diarization_s:.0f} s ({DIARIZATION_CLIP.name} repeated, {speakers} speakers) in {seconds:.2f} s "
        f"({sizes.diarization_s / seconds:.0f}x real time): {len(found.speakers)} speakers, {len(found.turns)} turns"
    )
    if not found.turns:
        raise StepFailed(summary)
    return {"status": "passed", "summary": summary, "data": {"seconds": seconds, "speakers": len(found.speakers)}}


def _diarization_clip() -> Any:
    """The committed FLAC through ffmpeg, or the WAV copy in the bundle where ffmpeg is missing."""
    from omoai_audio import decode_audio
    from omoai_core.errors import ConfigError

    try:
        return decode_audio(DIARIZATION_CLIP.with_suffix(".flac")).samples
    except ConfigError:
        from tests.support.diarization_corpus import read_wav

        return read_wav(BUNDLE / "assets" / f"{DIARIZATION_CLIP.name}.wav")


def main_step(args: argparse.Namespace) -> int:
    sizes = SIZES[args.device]
    work = Path(args.work)
    steps: dict[int, Callable[[], dict[str, Any]]] = {
        1: lambda: step_fidelity(args.device, sizes),
        2: lambda: step_bf16(args.device, sizes),
        3: lambda: step_memory(args.device, sizes, work),
        4: lambda: step_transducer_sync(args.device, sizes),
        5: lambda: step_speed(args.device, sizes, work),
        6: lambda: step_service(args.device, sizes, work),
        7: lambda: step_llm(args.device, sizes, work),
        8: lambda: step_diarization(args.device, sizes),
    }
    try:
        import torch

        torch.set_num_threads(min(4, os.cpu_count() or 1) if args.device == "cpu" else torch.get_num_threads())
        result = steps[args.run_step]()
    except StepFailed as e:
        result = {"status": "failed", "summary": str(e)}
    except Exception as e:  # noqa: BLE001 - every failure is reported, never raised past the step
        traceback.print_exc()
        result = {"status": "failed", "summary": f"{type(e).__name__}: {e}"[:600]}
    Path(args.result).write_text(json.dumps(result, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cuda (default) or cpu (small)")
    parser.add_argument("--out", help="report directory (default: $OUT, else out/gpu-check)")
    parser.add_argument("--steps", type=int, nargs="+", default=list(STEP_NAMES), choices=list(STEP_NAMES))
    parser.add_argument("--step-timeout", type=float, default=None, help="seconds per step (default by device)")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole check (cuda: 540)")
    parser.add_argument("--run-step", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_step:
        return main_step(args)
    return main_parent(args)


if __name__ == "__main__":
    sys.exit(main())
