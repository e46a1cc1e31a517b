"""Our engine against the reference's outputs (``tests/data/chunkformer``, chunkformer 1.2.2).

Every ``endless_decode`` entry of both fixtures: fbank, encoder output and CTC log-probs within
1e-3, the argmax path, window count and segment boundaries exactly, the text equal to the
standard CTC collapse of the argmax path. Every ``batch_decode`` entry: argmax paths exactly,
texts equal to the reference's (which already uses the standard collapse) without special tokens.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch
from omoai_asr.engine import ChunkFormerEngine, DecodeOptions
from omoai_asr.engine.decoding import format_timestamp, frame_segments
from omoai_asr.engine.features import fbank, samples_to_tensor
from omoai_asr.engine.transcribe import LongFormResult
from omoai_gpu.memory import MemoryPolicy
from prometheus_client import CollectorRegistry

from .conftest import FIXTURE_NAMES, FIXTURES, audio, expected, expected_array

TOL = 1e-3
# With a kernel set other than the fixture's (see conftest), a few low mel bins move this much.
FBANK_TOL_OTHER_KERNELS = 2.5e-3

ENDLESS = [(f, key) for f in FIXTURE_NAMES for key in expected(f)["endless_decode"]]
BATCH = [(f, key) for f in FIXTURE_NAMES for key in expected(f)["batch_decode"]]
AUDIO = [(f, a) for f in FIXTURE_NAMES for a in ("short", "long", "tiny")]


@cache
def engine(fixture: str) -> ChunkFormerEngine:
    policy = MemoryPolicy(torch.device("cpu"), torch.float32, registry=CollectorRegistry())
    return ChunkFormerEngine.load(FIXTURES / fixture / "model", policy)


@cache
def endless(fixture: str, key: str) -> LongFormResult:
    entry = expected(fixture)["endless_decode"][key]
    options = DecodeOptions(
        chunk_size=entry["chunk_size"],
        left_context=entry["left_context_size"],
        right_context=entry["right_context_size"],
        total_batch_duration=float(entry["total_batch_duration"]),
    )
    return engine(fixture).decode_frames(
        audio(fixture, key.split("__")[0]), options, keep_encoder_out=True, keep_logprobs=True
    )


def reference_collapse(path: list[int], tokens: list[str]) -> str:
    """The textbook CTC collapse, written independently of the engine for the comparison."""
    out: list[str] = []
    previous = None
    for t in path:
        if t != previous and t != 0:
            token = tokens[t]
            if not (token.startswith("<") and token.endswith(">")):
                out.append(token)
        previous = t
    return " ".join("".join(out).replace("\u2581", " ").split())


@pytest.mark.parametrize(("fixture", "name"), AUDIO)
def test_fbank_matches_reference(fixture: str, name: str) -> None:
    want = expected_array(fixture, f"fbank__{name}.npy")
    got = fbank(samples_to_tensor(audio(fixture, name))).numpy()
    assert got.shape == want.shape == (expected(fixture)["fbank"][name]["frames"], 80)
    same_kernels = torch.backends.cpu.get_cpu_capability() == "AVX2"
    assert np.abs(got - want).max() < (TOL if same_kernels else FBANK_TOL_OTHER_KERNELS)


@pytest.mark.parametrize(("fixture", "key"), ENDLESS)
def test_endless_encoder_out_and_logprobs_within_1e3(fixture: str, key: str) -> None:
    entry = expected(fixture)["endless_decode"][key]
    result = endless(fixture, key)
    want_enc = expected_array(fixture, entry["encoder_out_file"])
    want_lp = expected_array(fixture, entry["ctc_logprobs_file"])
    assert result.encoder_out is not None and result.logprobs is not None
    assert result.encoder_out.shape == want_enc.shape == (entry["num_encoder_frames"], want_enc.shape[1])
    assert result.logprobs.shape == want_lp.shape
    assert np.abs(result.encoder_out.numpy() - want_enc).max() < TOL
    assert np.abs(result.logprobs.numpy() - want_lp).max() < TOL


@pytest.mark.parametrize(("fixture", "key"), ENDLESS)
def test_endless_argmax_windows_and_segments_equal_reference(fixture: str, key: str) -> None:
    entry = expected(fixture)["endless_decode"][key]
    result = endless(fixture, key)
    assert result.frame_tokens.tolist() == entry["argmax_path"]
    assert len(result.windows) == entry["n_windows"]
    for ours, theirs in zip(result.windows, entry["windows"], strict=True):
        assert ours.input_frames == theirs["input_frames"][0]
        assert ours.encoder_frames == theirs["encoder_lens"][0]
        assert ours.n_chunks == theirs["n_chunks"][0]
        assert ours.offset_after == theirs["offset_in_after"][0]
    segments = [
        (format_timestamp(s.start_seconds), format_timestamp(s.end_seconds))
        for s in frame_segments(result.frame_tokens)
    ]
    assert segments == [(s["start"], s["end"]) for s in entry["segments"]]


@pytest.mark.parametrize(("fixture", "key"), ENDLESS)
def test_transcript_text_is_standard_collapse_of_argmax_path(fixture: str, key: str) -> None:
    entry = expected(fixture)["endless_decode"][key]
    eng = engine(fixture)
    options = DecodeOptions(
        entry["chunk_size"],
        entry["left_context_size"],
        entry["right_context_size"],
        float(entry["total_batch_duration"]),
        include_frames=True,
    )
    transcript = eng.transcribe(audio(fixture, key.split("__")[0]), options)
    assert transcript.frames == entry["argmax_path"]
    assert transcript.text == reference_collapse(entry["argmax_path"], list(eng.vocab.tokens))
    # Segment boundaries of the transcript are the reference's (segments without text dropped).
    boundaries = {(s["start"], s["end"]) for s in entry["segments"]}
    for seg in transcript.segments:
        assert (format_timestamp(seg.start), format_timestamp(seg.end)) in boundaries


@pytest.mark.parametrize(("fixture", "key"), BATCH)
def test_batch_decode_argmax_paths_and_texts_equal_reference(fixture: str, key: str) -> None:
    entry = expected(fixture)["batch_decode"][key]
    names = [a.split("/")[-1].removesuffix(".wav") for a in entry["audios"]]
    options = DecodeOptions(
        entry["chunk_size"],
        entry["left_context_size"],
        entry["right_context_size"],
        float(entry["total_batch_duration"]),
    )
    eng = engine(fixture)
    results = eng.decode_frames_batch([audio(fixture, n) for n in names], options)
    for name, result in zip(names, results, strict=True):
        assert result.frame_tokens.tolist() == entry["argmax_paths"][name]
    transcripts = eng.transcribe_batch([audio(fixture, n) for n in names], options)
    for transcript, text in zip(transcripts, entry["texts"], strict=True):
        assert transcript.text == " ".join(text.replace("<unk>", "").replace("<sos/eos>", "").split())


@pytest.mark.parametrize("fixture", FIXTURE_NAMES)
def test_batch_matches_single_window_long_form(fixture: str) -> None:
    """The batch forward and a one-window long-form decode are the same computation."""
    options = DecodeOptions(16, 32, 16, 1800.0)
    eng = engine(fixture)
    clips = [audio(fixture, n) for n in ("short", "long", "tiny")]
    batched = eng.decode_frames_batch(clips, options, keep_encoder_out=True)
    for clip, b in zip(clips, batched, strict=True):
        single = eng.decode_frames(clip, options, keep_encoder_out=True)
        assert b.frame_tokens.tolist() == single.frame_tokens.tolist()
        assert b.encoder_out is not None and single.encoder_out is not None
        assert torch.allclose(b.encoder_out, single.encoder_out, atol=1e-4)
