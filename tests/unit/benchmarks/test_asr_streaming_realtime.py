"""The real-time pacing mode of ``benchmarks/asr_streaming.py`` runs end to end on a tiny checkpoint.

Two streams of 3 s fed at real time in 100 ms pieces through the live scheduler (about 3 s of
wall time): their windows are committed while the audio arrives, never before the audio a window
needs has arrived (which checks the benchmark's geometry of that moment), and the word latencies
are measured from the words of the final transcripts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omoai_asr.engine import ChunkFormerEngine, DecodeOptions
from omoai_asr.engine.testing import TINY, synthetic_speech, write_random_checkpoint
from omoai_asr.engine.transcribe import right_context_frames
from omoai_gpu.memory import MemoryPolicy
from prometheus_client import CollectorRegistry

from benchmarks import asr_streaming


async def test_realtime_pacing_commits_while_audio_arrives_and_times_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_random_checkpoint(tmp_path / "tiny", TINY)
    engine = ChunkFormerEngine.load(
        path, MemoryPolicy(torch.device("cpu"), torch.float32, registry=CollectorRegistry())
    )
    options = DecodeOptions(4, 8, 2, 1.0)  # a window keeps 0.32 s; its right context is 1.12 s
    ready = asr_streaming.ready_after_s(right_context_frames(options, TINY.n_layer, TINY.conv_context))
    piece = 0.1
    clips = [synthetic_speech(3.0, seed=i) for i in range(2)]

    run = await asr_streaming.paced(engine, options, clips, piece_s=piece, right_s=ready, partial_interval_s=0.2)

    assert run.streams == 2 and run.wall_s >= 2.9
    assert run.commits >= 2  # windows committed before the audio ended (5 per stream are due)
    assert min(run.lags) >= 0.0  # no window is committed before the audio it needs has arrived
    assert run.to_commit and run.to_partial
    # A word waits at least for its window's right context (less the piece it arrived in).
    assert min(run.to_commit) >= ready - piece
    # A partial (or the commit itself) covers a word before its commit.
    assert asr_streaming.percentile(run.to_partial, 50) <= asr_streaming.percentile(run.to_commit, 50)

    asr_streaming.realtime_report("ctc", [run], 2 if run.realtime(2.0) else 0, 2.0)
    out = capsys.readouterr().out
    assert "| ctc | 2 |" in out and "largest N in real time (ctc)" in out
