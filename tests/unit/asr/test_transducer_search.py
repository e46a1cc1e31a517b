"""Transducer search edge cases: the 64-emission cap, all-blank and tiny audio, special tokens,
batched streams equal to single ones, and word times from the emitting frames."""

from __future__ import annotations

import copy
from functools import cache

import numpy as np
import pytest
import torch
from omoai_asr.engine import ChunkFormerEngine, DecodeOptions
from omoai_asr.engine.transducer import ACCELERATOR_TUNING, CPU_TUNING, SearchTuning, greedy_search, project_encoder
from omoai_gpu.memory import MemoryPolicy
from prometheus_client import CollectorRegistry

from .conftest import FIXTURES, audio, expected_array
from .emissions import per_frame

FIXTURE = "rnnt_small"


@cache
def engine() -> ChunkFormerEngine:
    policy = MemoryPolicy(torch.device("cpu"), torch.float32, registry=CollectorRegistry())
    return ChunkFormerEngine.load(FIXTURES / FIXTURE / "model", policy)


def biased(token: int) -> ChunkFormerEngine:
    """The fixture model with ``token`` always winning the joint."""
    eng = copy.copy(engine())
    eng.model = copy.deepcopy(engine().model)
    assert eng.model.joint is not None and eng.model.joint.ffn_out is not None
    with torch.no_grad():
        eng.model.joint.ffn_out.bias[token] += 1000.0
    return eng


def test_a_frame_that_never_emits_blank_stops_at_64_emissions() -> None:
    eng = biased(5)
    result = eng.decode_frames(audio(FIXTURE, "tiny"))
    assert result.emissions is not None and result.n_frames == 3
    assert per_frame(result.emissions, 3) == [[5] * 64] * 3
    # With the cap the search moves on: the predictor saw every emission (tokens keep coming).
    transcript = eng.transcribe(audio(FIXTURE, "tiny"))
    assert transcript.text == eng.vocab.tokens[5] * 192


def test_all_blank_audio_gives_an_empty_transcript() -> None:
    eng = biased(0)
    transcript = eng.transcribe(audio(FIXTURE, "short"))
    assert transcript.text == "" and transcript.segments == []
    assert transcript.duration == pytest.approx(7.0)


@pytest.mark.parametrize("token_name", ["<unk>", "<sos/eos>"])
def test_special_tokens_never_reach_text_but_keep_their_frames(token_name: str) -> None:
    token = engine().vocab.tokens.index(token_name)
    eng = biased(token)
    result = eng.decode_frames(audio(FIXTURE, "tiny"))
    assert result.emissions is not None and set(result.emissions.tokens.tolist()) == {token}
    transcript = eng.transcribe(audio(FIXTURE, "tiny"))
    assert transcript.text == "" and token_name not in transcript.model_dump_json()


@pytest.mark.parametrize("n_samples", [0, 100, 399, 400, 1500])
def test_audio_too_short_for_one_encoder_frame_is_empty_on_both_paths(n_samples: int) -> None:
    clip = audio(FIXTURE, "short")[:n_samples]
    assert engine().transcribe(clip).text == ""
    assert [t.text for t in engine().transcribe_batch([clip, clip])] == ["", ""]


def test_streams_searched_together_equal_streams_searched_alone() -> None:
    model = engine().model
    encs = [expected_array(FIXTURE, f"encoder_out__{n}__c64_l128_r128_tbd1800.npy") for n in ("short", "tiny", "long")]
    projected = [project_encoder(model, torch.from_numpy(e)) for e in encs]
    padded = torch.nn.utils.rnn.pad_sequence(projected, batch_first=True)
    with torch.inference_mode():
        together, _ = greedy_search(model, padded, torch.tensor([e.shape[0] for e in encs]))
        for p, found in zip(projected, together, strict=True):
            (alone,), _ = greedy_search(model, p[None], torch.tensor([p.size(0)]))
            assert np.array_equal(alone.tokens, found.tokens) and np.array_equal(alone.frames, found.frames)
    # Any look-ahead, fixed or adaptive, gives the same decisions (it only changes how many
    # frames one joint call covers).
    with torch.inference_mode():
        for lookahead, most in ((1, 1), (2, 2), (7, 7), (64, 64), (1, 64), (3, 5)):
            tuning = SearchTuning(lookahead=lookahead, max_lookahead=most, check_every=1, masked_updates=False)
            (found,), _ = greedy_search(model, projected[0][None], torch.tensor([encs[0].shape[0]]), tuning=tuning)
            assert np.array_equal(found.tokens, together[0].tokens)
            assert np.array_equal(found.frames, together[0].frames)


def test_accelerator_branch_run_on_cpu_equals_the_cpu_branch() -> None:
    """Masked predictor updates, a fixed window and sparse host checks (what an accelerator runs)
    decide exactly what the CPU branch decides, streams of different lengths together."""
    assert ACCELERATOR_TUNING.masked_updates and not CPU_TUNING.masked_updates
    model = engine().model
    eng = engine()
    clips = [audio(FIXTURE, n) for n in ("short", "tiny", "long")]
    with torch.inference_mode():
        encs = [r.encoder_out for r in eng.decode_frames_batch(clips, DecodeOptions(), keep_encoder_out=True)]
        projected = [project_encoder(model, e) for e in encs if e is not None]
        padded = torch.nn.utils.rnn.pad_sequence(projected, batch_first=True)
        lengths = torch.tensor([p.size(0) for p in projected])
        on_cpu, cpu_state = greedy_search(model, padded, lengths, tuning=CPU_TUNING)
        masked, masked_state = greedy_search(model, padded, lengths, tuning=ACCELERATOR_TUNING)
    assert sum(e.tokens.size for e in on_cpu) > 0
    for a, b in zip(on_cpu, masked, strict=True):
        assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.frames, b.frames)
    # The carried state too (long form continues from it), up to float32 rounding: stepping B
    # rows or only the emitting ones sums the same products in another order.
    for a, b in (
        (cpu_state.h, masked_state.h),
        (cpu_state.c, masked_state.c),
        (cpu_state.pred_proj, masked_state.pred_proj),
    ):
        assert torch.allclose(a, b, atol=1e-5)


def test_search_tuning_refuses_an_empty_window() -> None:
    with pytest.raises(ValueError, match="lookahead"):
        SearchTuning(lookahead=0, max_lookahead=4, check_every=1, masked_updates=False)
    with pytest.raises(ValueError, match="lookahead"):
        SearchTuning(lookahead=8, max_lookahead=4, check_every=1, masked_updates=False)


def test_words_start_and_end_on_the_frames_that_emitted_their_tokens() -> None:
    eng = engine()
    clip = audio(FIXTURE, "short")
    result = eng.decode_frames(clip)
    transcript = eng.transcribe(clip, DecodeOptions(word_timestamps=True))
    assert result.emissions is not None
    frames_of = {round(f * 0.08, 3) for f in result.emissions.frames.tolist()}
    ends_of = {round((f + 1) * 0.08, 3) for f in result.emissions.frames.tolist()}
    words = [w for s in transcript.segments for w in s.words]
    assert words and all(w.start in frames_of for w in words)
    assert all(w.end in ends_of or any(w.end == s.end for s in transcript.segments) for w in words)
    assert " ".join(w.word for s in transcript.segments for w in s.words) == transcript.text
