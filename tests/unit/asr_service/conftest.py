"""Fixtures of the ASR service unit tests: a tiny random checkpoint and speech-like WAV files."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from omoai_asr.engine.testing import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-asr")


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from omoai_asr.engine.testing import synthetic_speech

    d = tmp_path_factory.mktemp("speech")
    return [write_wav(d / f"clip{i}.wav", synthetic_speech(3.0 + i, seed=i)) for i in range(2)]
