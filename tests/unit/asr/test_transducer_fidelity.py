"""Our transducer decoding against the reference's (``tests/data/chunkformer/rnnt_small``).

Every ``endless_decode`` entry: encoder output within 1e-3, window records, the emissions of
every frame, the tokens, the text and every segment's text and times exactly. Every
``batch_decode`` entry: the reference's grouping, per-utterance emissions and tokens, its batch
text rule, and our transcripts equal to its long-form ones. The predictor and joint alone: fed
the reference's encoder output, every joint evaluation matches its log-probs (debugging aid).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch
from omoai_asr.engine import ChunkFormerEngine, DecodeOptions
from omoai_asr.engine.decoding import detokenize, format_timestamp
from omoai_asr.engine.transcribe import LongFormResult, reference_batches
from omoai_asr.engine.transducer import SearchStep, greedy_search, project_encoder
from omoai_gpu.memory import MemoryPolicy
from prometheus_client import CollectorRegistry

from .conftest import FIXTURES, audio, expected, expected_array
from .emissions import per_frame

FIXTURE = "rnnt_small"
TOL = 1e-3
# Joint log-probs from the reference's encoder output: float32 GEMM order differences only
# (an independent re-implementation is within 1.3e-5); decisions have margins >= 0.27.
JOINT_TOL = 5e-5
ENDLESS = list(expected(FIXTURE)["endless_decode"])
BATCH = list(expected(FIXTURE)["batch_decode"])


@cache
def engine() -> ChunkFormerEngine:
    policy = MemoryPolicy(torch.device("cpu"), torch.float32, registry=CollectorRegistry())
    return ChunkFormerEngine.load(FIXTURES / FIXTURE / "model", policy)


def options_of(entry: dict[str, object], **extra: object) -> DecodeOptions:
    return DecodeOptions(
        chunk_size=int(entry["chunk_size"]),  # type: ignore[call-overload]
        left_context=int(entry["left_context_size"]),  # type: ignore[call-overload]
        right_context=int(entry["right_context_size"]),  # type: ignore[call-overload]
        total_batch_duration=float(entry["total_batch_duration"]),  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )


@cache
def endless(key: str) -> LongFormResult:
    entry = expected(FIXTURE)["endless_decode"][key]
    return engine().decode_frames(audio(FIXTURE, key.split("__")[0]), options_of(entry), keep_encoder_out=True)


@pytest.mark.parametrize("key", ENDLESS)
def test_endless_encoder_out_within_1e3_and_windows_equal_reference(key: str) -> None:
    entry = expected(FIXTURE)["endless_decode"][key]
    result = endless(key)
    want = expected_array(FIXTURE, entry["encoder_out_file"])
    assert result.encoder_out is not None
    assert result.encoder_out.shape == want.shape == (entry["num_encoder_frames"], want.shape[1])
    assert np.abs(result.encoder_out.numpy() - want).max() < TOL
    assert len(result.windows) == entry["n_windows"]
    for ours, theirs in zip(result.windows, entry["windows"], strict=True):
        assert ours.input_frames == theirs["input_frames"][0]
        assert ours.encoder_frames == theirs["encoder_lens"][0]
        assert ours.offset_after == theirs["offset_in_after"][0]


@pytest.mark.parametrize("key", ENDLESS)
def test_endless_emissions_of_every_frame_equal_reference(key: str) -> None:
    entry = expected(FIXTURE)["endless_decode"][key]
    result = endless(key)
    assert result.emissions is not None
    assert per_frame(result.emissions, result.n_frames) == entry["emissions"]
    assert result.emissions.tokens.tolist() == entry["tokens"]
    # The frame path is each frame's first search step: its first emission, or blank.
    assert result.frame_tokens.tolist() == [e[0] if e else 0 for e in entry["emissions"]]


@pytest.mark.parametrize("key", ENDLESS)
def test_endless_transcript_text_and_segments_equal_reference(key: str) -> None:
    entry = expected(FIXTURE)["endless_decode"][key]
    transcript = engine().transcribe(audio(FIXTURE, key.split("__")[0]), options_of(entry))
    assert transcript.text == entry["text"]
    ours = [(s.text, format_timestamp(s.start), format_timestamp(s.end)) for s in transcript.segments]
    assert ours == [(s["decode"], s["start"], s["end"]) for s in entry["segments"]]


@pytest.mark.parametrize("key", BATCH)
def test_batch_decode_grouping_emissions_and_texts_equal_reference(key: str) -> None:
    entry = expected(FIXTURE)["batch_decode"][key]
    names = [a.split("/")[-1].removesuffix(".wav") for a in entry["audios"]]
    options = options_of(entry)
    eng = engine()
    clips = [audio(FIXTURE, n) for n in names]
    groups = reference_batches([eng.features(c).size(0) for c in clips], options)
    assert [[names[i] for i in g] for g in groups] == entry["batches"]
    results = eng.decode_frames_batch(clips, options)
    for name, result, text in zip(names, results, entry["texts"], strict=True):
        assert result.emissions is not None
        assert per_frame(result.emissions, result.n_frames) == entry["emissions"][name]
        assert result.emissions.tokens.tolist() == entry["hyps"][name]
        # The reference's batch text: all tokens joined, no segment breaks.
        assert detokenize(result.emissions.tokens, eng.vocab) == text
    # Our transcripts use the long-form text rule on every path: equal to endless_decode's.
    for name, transcript in zip(names, eng.transcribe_batch(clips, options), strict=True):
        assert transcript.text == expected(FIXTURE)["endless_decode"][f"{name}__{key}"]["text"]


@pytest.mark.parametrize("key", ENDLESS)
def test_joint_logprobs_of_every_search_step_match_reference(key: str) -> None:
    entry = expected(FIXTURE)["endless_decode"][key]
    enc = torch.from_numpy(expected_array(FIXTURE, entry["encoder_out_file"]))
    want = expected_array(FIXTURE, entry["joint_logprobs_file"])
    steps = expected_array(FIXTURE, entry["joint_steps_file"])
    model = engine().model
    trace: list[SearchStep] = []
    with torch.inference_mode():
        (found,), _ = greedy_search(model, project_encoder(model, enc)[None], torch.tensor([enc.size(0)]), trace=trace)
    assert len(trace) == entry["n_search_steps"] == len(steps)
    assert [[s.frame, s.step] for s in trace] == steps.tolist()
    assert np.abs(np.stack([s.logprobs for s in trace]) - want).max() < JOINT_TOL
    assert per_frame(found, enc.size(0)) == entry["emissions"]
