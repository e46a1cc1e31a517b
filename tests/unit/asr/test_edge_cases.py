"""Inputs where the reference misbehaves, option validation, and transcript invariants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omoai_asr.engine import ChunkFormerEngine, DecodeOptions, InvalidDecodeOptionsError
from omoai_asr.engine.model import subsampled_length
from omoai_asr.engine.testing import TINY, synthetic_speech, write_random_checkpoint
from omoai_asr.engine.transcribe import plan_windows, window_keep_frames
from omoai_core.errors import InvalidInputError
from omoai_gpu.memory import MemoryPolicy

from .conftest import FIXTURES, audio, expected


@pytest.fixture(scope="module")
def small_engine() -> ChunkFormerEngine:
    return ChunkFormerEngine.load(FIXTURES / "small" / "model", MemoryPolicy(torch.device("cpu"), torch.float32))


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory: pytest.TempPathFactory) -> ChunkFormerEngine:
    directory = write_random_checkpoint(tmp_path_factory.mktemp("tiny"), TINY)
    return ChunkFormerEngine.load(directory, MemoryPolicy(torch.device("cpu"), torch.float32))


def _samples_for_frames(n_frames: int) -> int:
    return 400 + 160 * (n_frames - 1)


@pytest.mark.parametrize("n_samples", [0, 1, 200, 399])
def test_audio_under_one_fbank_frame_gives_an_empty_transcript(small_engine: ChunkFormerEngine, n_samples: int) -> None:
    samples = audio("small", "short")[:n_samples]
    transcript = small_engine.transcribe(samples, DecodeOptions(include_frames=True))
    assert transcript.text == "" and transcript.segments == [] and transcript.frames == []
    assert transcript.duration == pytest.approx(n_samples / 16000)


@pytest.mark.parametrize("n_frames", [1, 6, 7, 14])
def test_one_to_fourteen_fbank_frames_give_an_empty_transcript(small_engine: ChunkFormerEngine, n_frames: int) -> None:
    samples = audio("small", "short")[: _samples_for_frames(n_frames)]
    transcript = small_engine.transcribe(samples, DecodeOptions(include_frames=True))
    assert transcript.frames == [] and transcript.text == "" and transcript.segments == []


def test_fifteen_fbank_frames_give_one_encoder_frame(small_engine: ChunkFormerEngine) -> None:
    samples = audio("small", "short")[: _samples_for_frames(15)]
    result = small_engine.decode_frames(samples, keep_logprobs=True)
    assert result.frame_tokens.shape == (1,)
    assert result.logprobs is not None and torch.isfinite(result.logprobs).all()


@pytest.mark.parametrize("tbd", [0.05, 1.0, 5.0, 10.0, 10.24])
def test_small_total_batch_duration_works_and_matches_the_one_chunk_window(
    small_engine: ChunkFormerEngine, tbd: float
) -> None:
    # The reference crashes below ~10.24 s at chunk 64; we clamp the window to one chunk,
    # which is exactly the window the reference uses at 11 s.
    options = DecodeOptions(64, 128, 128, tbd)
    assert window_keep_frames(options) == 64
    result = small_engine.decode_frames(audio("small", "long"), options)
    assert (
        result.frame_tokens.tolist() == expected("small")["endless_decode"]["long__c64_l128_r128_tbd11"]["argmax_path"]
    )


@pytest.mark.parametrize(("chunk", "left", "right"), [(64, 128, 128), (16, 32, 16), (8, 16, 4), (4, 0, 0), (1, 3, 2)])
@pytest.mark.parametrize("tbd", [0.01, 3.0, 11.0, 60.0])
def test_windows_cover_every_encoder_frame_exactly_once(chunk: int, left: int, right: int, tbd: float) -> None:
    options = DecodeOptions(chunk, left, right, tbd)
    keep = window_keep_frames(options)
    for n_frames in [*range(40), *range(8 * keep - 20, 8 * keep + 40), 3 * 8 * keep + 5, 7498]:
        plans = plan_windows(n_frames, options, n_layer=3, conv_context=7)
        kept = sum(
            subsampled_length(p.n_frames)
            if p.final or i == len(plans) - 1
            else min(subsampled_length(p.n_frames), keep)
            for i, p in enumerate(plans)
        )
        assert kept == subsampled_length(n_frames), (n_frames, plans)
        assert all(subsampled_length(p.n_frames) > 0 for p in plans)


def test_tail_shorter_than_one_encoder_frame_adds_no_garbage(tiny_engine: ChunkFormerEngine) -> None:
    # 8 * keep + 3 fbank frames: the reference would run a last window of 3 frames and append
    # chunk padding; we emit exactly (T - 7) // 8 frames.
    options = DecodeOptions(8, 16, 4, 0.01)
    keep = window_keep_frames(options)
    n_frames = 2 * 8 * keep + 3
    samples = synthetic_speech(10.0)[: _samples_for_frames(n_frames)]
    result = tiny_engine.decode_frames(samples, options)
    assert result.frame_tokens.shape == (subsampled_length(n_frames),)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"chunk_size": 0},
        {"chunk_size": -1},
        {"chunk_size": 1.5},
        {"chunk_size": True},
        {"left_context": -1},
        {"right_context": -3},
        {"chunk_size": 64, "left_context": 5000},
        {"total_batch_duration": 0},
        {"total_batch_duration": -1.0},
        {"total_batch_duration": float("nan")},
        {"max_silence_duration": 0.01},
    ],
)
def test_options_the_reference_cannot_run_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidDecodeOptionsError) as info:
        DecodeOptions(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError) and isinstance(info.value, InvalidInputError)
    assert str(info.value)


def test_options_are_frozen() -> None:
    with pytest.raises(AttributeError):
        DecodeOptions().chunk_size = 8  # type: ignore[misc]


def test_special_tokens_never_reach_text_segments_or_words(small_engine: ChunkFormerEngine) -> None:
    entry = expected("small")["endless_decode"]["long__c64_l128_r128_tbd1800"]
    assert "<unk>" in entry["text"] and "<sos/eos>" in entry["text"]  # the reference leaks them
    transcript = small_engine.transcribe(audio("small", "long"))
    pieces = [transcript.text] + [s.text for s in transcript.segments]
    pieces += [w.word for s in transcript.segments for w in s.words]
    assert pieces and not any("<" in p or ">" in p or "\u2581" in p for p in pieces)


@pytest.mark.parametrize("fixture", ["small", "wide_k31"])
def test_words_lie_inside_their_segments_in_order(fixture: str) -> None:
    engine = ChunkFormerEngine.load(FIXTURES / fixture / "model", MemoryPolicy(torch.device("cpu"), torch.float32))
    transcript = engine.transcribe(audio(fixture, "long"))
    assert transcript.segments
    previous_end = 0.0
    for seg in transcript.segments:
        assert seg.words and seg.start >= previous_end - 1e-9 and seg.end <= transcript.duration
        assert " ".join(w.word for w in seg.words) == seg.text
        for a, b in zip(seg.words, seg.words[1:], strict=False):
            assert a.end <= b.start + 1e-9
        for w in seg.words:
            assert seg.start <= w.start <= w.end <= seg.end
        previous_end = seg.end


def test_word_timestamps_can_be_switched_off(small_engine: ChunkFormerEngine) -> None:
    transcript = small_engine.transcribe(audio("small", "short"), DecodeOptions(word_timestamps=False))
    assert transcript.segments and all(s.words == [] for s in transcript.segments)


def test_transcribe_batch_equals_transcribe_item_by_item(tiny_engine: ChunkFormerEngine) -> None:
    # At 11 s one window holds 519 fbank frames: "short" and the 20 s clip go long-form,
    # the others share a masked batch.
    clips = [
        synthetic_speech(20.0, seed=3),
        audio("small", "tiny"),
        np.zeros(100, dtype=np.int16),
        synthetic_speech(4.0, seed=4),
        audio("small", "short"),
        synthetic_speech(2.5, seed=6),
    ]
    options = DecodeOptions(16, 32, 16, 11.0, include_frames=True)
    batched = tiny_engine.transcribe_batch(clips, options)
    assert len(batched) == len(clips)
    for clip, got in zip(clips, batched, strict=True):
        single = tiny_engine.transcribe(clip, options)
        assert got.frames == single.frames
        assert got.text == single.text
        assert got.duration == pytest.approx(len(clip) / 16000)


def test_progress_reports_each_window_up_to_one(small_engine: ChunkFormerEngine) -> None:
    seen: list[float] = []
    small_engine.transcribe(audio("small", "long"), DecodeOptions(64, 128, 128, 11.0), progress=seen.append)
    assert len(seen) == 10 and seen == sorted(seen) and seen[-1] == pytest.approx(1.0)


def test_engine_name_is_the_model_directory(tmp_path: Path) -> None:
    directory = write_random_checkpoint(tmp_path / "my-model", TINY)
    engine = ChunkFormerEngine.load(directory, MemoryPolicy(torch.device("cpu"), torch.float32))
    assert engine.name == "my-model"
    assert engine.transcribe(synthetic_speech(1.0)).model == "my-model"
