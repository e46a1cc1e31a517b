"""Fixtures of the security suite: a tiny ASR checkpoint, a tiny LLM, and hostile media (a FLAC of
five hours of silence with no declared duration, a 64-channel WAV) made with ffmpeg and sox.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.security.harness import need, run


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("ffmpeg", "sox", "espeak-ng")
    d = tmp_path_factory.mktemp("security-media")
    raw = d / "raw.wav"
    run(["espeak-ng", "-v", "vi", "-w", str(raw), "xin chào các bạn hôm nay trời đẹp"])
    run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(raw), "-ac", "1", "-ar", "16000", str(d / "speech.wav")])
    # Five hours of silence as FLAC written to a pipe: the stream has no declared length, so only
    # decoding can tell how long it is.
    with (d / "bomb.flac").open("wb") as fh:
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "anullsrc=r=16000:cl=mono",
                "-t",
                "18000",
                "-c:a",
                "flac",
                "-compression_level",
                "8",
                "-f",
                "flac",
                "-",
            ],
            check=True,
            stdout=fh,
            timeout=300,
        )
    # 64 channels without a layout: ffmpeg's own downmix refuses it.
    run(["sox", "-n", "-r", "16000", "-c", "64", "-b", "16", str(d / "ch64.wav"), "synth", "2", "sine", "300"])
    return d


@pytest.fixture(scope="session")
def asr_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from omoai_asr.engine.testing import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("security-ckpt") / "tiny-asr")


@pytest.fixture(scope="session")
def llm_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from omoai_llm.testing import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("security-llm"), seed=0)
