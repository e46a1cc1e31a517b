#!/usr/bin/env python3
"""Build, here, what ``make gpu-check`` needs on a GPU machine that reaches no package registry.

Such a machine has Python 3.12 with a CUDA PyTorch and a scientific stack (numpy, PyYAML, tqdm,
pandas, colorama, transformers, tokenizers, huggingface-hub, onnxruntime, httpx, prometheus-client,
torchaudio; see the device notes), but not OMOAI's service dependencies nor the reference
ChunkFormer. This script puts into ``.whl/`` (git-ignored):

- ``ours/``: wheels of what OMOAI's services import beyond that image (pydantic, FastAPI, uvicorn...);
- ``ref/``: ``chunkformer==1.2.2`` and what its decode path imports beyond the image;
- ``refstub/torchaudio/``: the torchaudio stub of ``benchmarks/setup_reference.sh`` (torchaudio's
  own ``compliance/kaldi.py``), so the reference's fbank is the same code as on CPU;
- ``assets/``: the diarization backend's two files, taken from the PyPI wheels the service uses
  (``resemblyzer``'s speaker encoder, saved as its ``model_state`` in float16 without the optimizer
  state: 2.9 MB instead of 17 MB; ``faster-whisper``'s Silero VAD graph), and one committed
  diarization conversation as WAV, for a machine without ffmpeg to decode the FLAC.

The checkout plus this bundle travels to the GPU machine and must stay under 64 MiB; the sizes
of every file are pinned in ``scripts/gpu_bundle.json`` (the tree-size test reads it, also where
the bundle was never built), and a build that differs from it fails until ``--write-manifest``.

    make gpu-bundle                 # = .venv/bin/python scripts/gpu_bundle.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import wave
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / ".whl"
MANIFEST = Path(__file__).resolve().with_name("gpu_bundle.json")
PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")

# One version of each, matching the repository's own environment; --no-deps, so every need is named.
WHEELS = {
    "ours": (
        "pydantic==2.14.4",
        "pydantic-core==2.50.5",
        "annotated-types==0.8.0",
        "typing-inspection==0.4.5",
        "typing-extensions==4.16.0",
        "pydantic-settings==2.16.3",
        "python-dotenv==1.2.4",
        "fastapi==0.165.0",
        "starlette==1.10.0",
        "uvicorn==0.54.0",
        "python-multipart==0.0.34",
        # Not imported today, but pinned by the repository and cheap: a service that starts to
        # import them (WebSocket endpoints, JSON logs) still starts there.
        "websockets==17.4",
        "python-json-logger==4.2.0",
    ),
    # chunkformer_model.py imports jiwer (-> rapidfuzz) and pydub at module level; it runs with
    # the image's transformers 5 (checked on CPU with transformers 5.24).
    "ref": ("chunkformer==1.2.2", "jiwer==4.0.0", "rapidfuzz==3.14.6", "pydub==0.25.1"),
}
ASSET_WHEELS = {"encoder": "resemblyzer==0.1.4", "vad": "faster-whisper==1.2.1"}
SPEAKER_ENCODER = "assets/speaker_encoder.pt"
SILERO_VAD = "assets/silero_vad_v6.onnx"
CONVERSATION = "quick-3spk-100"


def download(specs: tuple[str, ...], dest: Path) -> None:
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps"]
    cmd += ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp", *platforms]
    subprocess.run([*cmd, "-d", str(dest), *specs], check=True)


def build_assets(dest: Path) -> None:
    import torch  # here only: the bundle build runs in the repository's environment

    with tempfile.TemporaryDirectory() as tmp:
        download(tuple(ASSET_WHEELS.values()), Path(tmp))
        (encoder_whl,) = Path(tmp).glob("[Rr]esemblyzer-*.whl")
        (vad_whl,) = Path(tmp).glob("faster_whisper-*.whl")
        with zipfile.ZipFile(encoder_whl) as z:
            (Path(tmp) / "pretrained.pt").write_bytes(z.read("resemblyzer/pretrained.pt"))
        with zipfile.ZipFile(vad_whl) as z:
            (dest / SILERO_VAD).write_bytes(z.read("faster_whisper/assets/silero_vad_v6.onnx"))
        checkpoint = torch.load(Path(tmp) / "pretrained.pt", map_location="cpu", weights_only=True)
        state = {k: v.half() if v.is_floating_point() else v for k, v in checkpoint["model_state"].items()}
        torch.save({"model_state": state}, dest / SPEAKER_ENCODER)
    from omoai_audio import decode_audio

    samples = decode_audio(ROOT / "tests" / "data" / "diarization" / f"{CONVERSATION}.flac").samples
    with wave.open(str(dest / "assets" / f"{CONVERSATION}.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(samples.tobytes())


def build() -> None:
    for group in (*WHEELS, "refstub", "assets"):
        target = BUNDLE / group
        if target.exists():
            subprocess.run(["rm", "-rf", str(target)], check=True)
    for group, specs in WHEELS.items():
        (BUNDLE / group).mkdir(parents=True)
        download(specs, BUNDLE / group)
    subprocess.run(
        [str(ROOT / "benchmarks" / "setup_reference.sh"), "--stub-into", str(BUNDLE / "refstub")], check=True
    )
    (BUNDLE / "assets").mkdir(parents=True)
    build_assets(BUNDLE)


def current_files() -> dict[str, int]:
    """Every file of the bundle (relative path -> bytes), caches excluded."""
    return {
        str(p.relative_to(BUNDLE)): p.stat().st_size
        for p in sorted(BUNDLE.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def read_manifest(path: Path = MANIFEST) -> dict[str, int]:
    files: dict[str, int] = json.loads(path.read_text(encoding="utf-8"))["files"]
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-build", action="store_true", help="only compare an existing .whl/ with the manifest")
    parser.add_argument("--write-manifest", action="store_true", help="record the built files as the manifest")
    args = parser.parse_args(argv)
    if not args.no_build:
        build()
    files = current_files()
    total = sum(files.values())
    if args.write_manifest:
        doc = {"about": "files of .whl/ built by scripts/gpu_bundle.py (bytes)", "total": total, "files": files}
        MANIFEST.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    want = read_manifest()
    if files != want:
        changed = sorted(set(files.items()) ^ set(want.items()))
        print(f"the bundle differs from {MANIFEST.name}: {changed}; rerun with --write-manifest", file=sys.stderr)
        return 1
    print(f"bundle .whl/: {len(files)} files, {total / 2**20:.2f} MiB, as in {MANIFEST.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
