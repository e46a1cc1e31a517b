"""Shared fixtures of the ASR engine tests: reference fixtures, audio, a CPU memory policy.

The reference fixtures were generated on CPU with one thread and torch's AVX2 kernels. Kaldi
fbank in float32 is extremely sensitive in its low mel bins (the pre-emphasis filter leaves
them near the FFT's rounding floor: a one-ulp change of the window moves them by 1e-2), so
AVX512 kernels shift a few values by up to 1.2e-3. Pinning the kernel set before torch runs
its first operation makes our features bit-identical to the fixture's; the fbank test allows a
documented wider bound when another kernel set was already chosen.
"""

from __future__ import annotations

import json
import os
import wave
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")

import numpy as np
import pytest
import torch
from omoai_gpu.memory import MemoryPolicy
from prometheus_client import CollectorRegistry

from tests.support import reference_arrays

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "chunkformer"
FIXTURE_NAMES = ("small", "wide_k31")


def read_wav(path: Path) -> np.ndarray:
    """16 kHz mono PCM16 wav -> int16 samples (stdlib only)."""
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


@cache
def expected(fixture: str) -> dict[str, Any]:
    return json.loads((FIXTURES / fixture / "expected" / "expected.json").read_text(encoding="utf-8"))


def expected_array(fixture: str, file_name: str) -> np.ndarray:
    """An expected array by the file name ``expected.json`` gives (``fbank__long.npy``, ...)."""
    return reference_arrays.expected_array(FIXTURES / fixture, file_name)


@cache
def audio(fixture: str, name: str) -> np.ndarray:
    return read_wav(FIXTURES / fixture / "audio" / f"{name}.wav")


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> Iterator[None]:
    """One thread, like the fixture generator; also much faster on a shared two-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def policy() -> MemoryPolicy:
    return MemoryPolicy(torch.device("cpu"), torch.float32, registry=CollectorRegistry())
