"""Fixtures of the diarization tests: the default backend with the real pretrained weights the
resemblyzer and faster-whisper wheels ship (scripts/setup.sh installs them), and the committed
multi-speaker conversations under tests/data/diarization with their reference RTTM."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from omoai_asr.diarization.pipeline import EmbeddingDiarizer
from omoai_asr.diarization.types import SpeakerTurn
from omoai_audio import decode_audio
from omoai_gpu.memory import MemoryPolicy

from tests.support.diarization_corpus import read_rttm

DATA = Path(__file__).resolve().parents[2] / "data" / "diarization"
CONVERSATIONS = sorted(p.stem for p in DATA.glob("*.flac"))


@cache
def conversation(name: str) -> tuple[np.ndarray, list[SpeakerTurn]]:
    """(int16 samples, reference turns) of one committed conversation."""
    samples = decode_audio(DATA / f"{name}.flac").samples
    ref = [SpeakerTurn(t.speaker, t.start, t.end) for t in read_rttm((DATA / f"{name}.rttm").read_text())]
    return samples, ref


@pytest.fixture(scope="session")
def diarizer() -> EmbeddingDiarizer:
    return EmbeddingDiarizer.load(MemoryPolicy(torch.device("cpu"), torch.float32))


def der(reference: list[SpeakerTurn], hypothesis: tuple[SpeakerTurn, ...] | list[SpeakerTurn]) -> float:
    """Diarization error rate by pyannote.metrics (the standard scorer), 0.25 s collar, overlap scored."""
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(turns):
        a = Annotation()
        for i, t in enumerate(turns):
            a[Segment(t.start, t.end), i] = t.speaker
        return a

    metric = DiarizationErrorRate(collar=0.25, skip_overlap=False)
    ref = annotation(reference)
    hyp = annotation(hypothesis)
    uem = Timeline([Segment(0.0, max(t.end for t in reference) + 1.0)])
    return float(metric(ref, hyp, uem=uem))
