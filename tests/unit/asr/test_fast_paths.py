"""The engine's fast paths compute what the reference's plain formulation computes.

Each optimisation (fused SDPA attention with the relative-position scores as an additive mask,
channels-last GEMM subsampling in chunk groups, cached position keys, logits-only CTC argmax,
compact window caches) is checked here against the textbook computation written out in the
test, at float32 on CPU, independently of the reference fixtures.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omoai_asr.engine import ChunkFormerEngine, DecodeOptions
from omoai_asr.engine.model import ChunkAttention, CtcHead, Subsampling, relative_positions
from omoai_asr.engine.testing import TINY, synthetic_speech, with_dims, write_random_checkpoint
from omoai_asr.engine.transcribe import chunk_masks
from omoai_gpu.memory import MemoryPolicy
from prometheus_client import CollectorRegistry
from torch import nn
from torch.nn import functional as F

DIMS = with_dims(TINY, n_state=64, n_head=4)


def _randomise(module: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
    return module.eval()


def _textbook_attention(
    m: ChunkAttention, x: torch.Tensor, valid: torch.Tensor, chunk: int, left: int, right: int
) -> torch.Tensor:
    """The reference's matmul-softmax-matmul over [l | c | r] keys without cache (zero padding)."""
    n, c, d = x.shape
    h, dk = m.h, m.d_k
    q = m.linear_q(x).view(n, c, h, dk)
    k = F.pad(m.linear_k(x).reshape(n * c, h, dk), (0, 0, 0, 0, left, right))
    v = F.pad(m.linear_v(x).reshape(n * c, h, dk), (0, 0, 0, 0, left, right))
    window = left + c + right
    keys = torch.stack([k[i * c : i * c + window] for i in range(n)]).transpose(1, 2)  # (N, h, W, dk)
    values = torch.stack([v[i * c : i * c + window] for i in range(n)]).transpose(1, 2)
    pos = m.linear_pos(relative_positions(DIMS, chunk, left, right)).view(-1, h, dk)  # (P, h, dk)
    scores = torch.empty(n, h, c, window)
    for i in range(c):
        for j in range(window):
            # query i sits at key position left + i; relative distance left + i - j.
            p_row = pos[chunk - 1 + j - i]  # row of distance left + i - j in the table
            ac = ((q[:, i] + m.pos_bias_u) * keys[:, :, j]).sum(-1)
            bd = ((q[:, i] + m.pos_bias_v) * p_row).sum(-1)
            scores[:, :, i, j] = (ac + bd) / math.sqrt(dk)
    scores = scores.masked_fill(~valid[:, None, None, :], -float("inf"))
    attn = torch.softmax(scores, dim=-1).masked_fill(~valid[:, None, None, :], 0.0)
    return m.linear_out((attn @ values).transpose(1, 2).reshape(n, c, d))


@pytest.mark.parametrize(("chunk", "left", "right", "length"), [(4, 8, 4, 21), (3, 0, 5, 12), (5, 6, 0, 25)])
def test_fused_attention_equals_textbook_relative_position_attention(
    chunk: int, left: int, right: int, length: int
) -> None:
    m = _randomise(ChunkAttention(DIMS), seed=chunk + left)
    n = math.ceil(length / chunk)
    x = torch.randn(n, chunk, DIMS.n_state, generator=torch.Generator().manual_seed(1))
    options = DecodeOptions(chunk, left, right)
    valid, _ = chunk_masks(n, length, 0, options, DIMS.conv_context, torch.device("cpu"))
    pos = m.project_positions(relative_positions(DIMS, chunk, left, right))
    with torch.inference_mode():
        got, _ = m(x, ~valid[:, None, None, :], pos, None, left, right, 0)
        want = _textbook_attention(m, x, valid, chunk, left, right)
    frames = torch.arange(n * chunk).view(n, chunk) < length  # padding queries are don't-care
    assert torch.allclose(got[frames], want[frames], rtol=1e-5, atol=1e-4)


def test_attention_over_only_invalid_keys_stays_finite() -> None:
    m = _randomise(ChunkAttention(DIMS), seed=3)
    x = torch.randn(2, 4, DIMS.n_state)
    invalid = torch.ones(2, 1, 1, 4 + 8 + 4, dtype=torch.bool)
    pos = m.project_positions(relative_positions(DIMS, 4, 8, 4))
    with torch.inference_mode():
        out, _ = m(x, invalid, pos, None, 8, 4, 0)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("limit", [1, 2**16, 2**30])
def test_grouped_channels_last_subsampling_equals_plain_convolutions(limit: int) -> None:
    m = _randomise(Subsampling(DIMS), seed=5)
    m.max_conv_elements_cpu = limit  # one chunk per group, a few, or all at once
    x = torch.randn(5, 8 * 6 + 7, DIMS.n_mels, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        got = m(x)
        y = m.conv(x.unsqueeze(1))  # the reference's NCHW nn.Sequential
        n, c, t, f = y.shape
        want = m.out(y.transpose(1, 2).reshape(n, t, c * f)) * m.xscale
    assert got.shape == (5, 6, DIMS.n_state)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-4)


def test_greedy_ctc_equals_argmax_of_log_softmax_across_blocks() -> None:
    head = _randomise(CtcHead(DIMS), seed=7)
    head.block_frames = head.block_frames_cpu = 7  # several blocks and a ragged last one
    x = torch.randn(52, DIMS.n_state, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        assert torch.equal(head.greedy(x), head(x).argmax(dim=-1))


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> ChunkFormerEngine:
    directory: Path = write_random_checkpoint(tmp_path_factory.mktemp("fast"), TINY)
    return ChunkFormerEngine.load(
        directory, MemoryPolicy(torch.device("cpu"), torch.float32, registry=CollectorRegistry())
    )


def test_window_caches_are_compact_copies_not_views_of_the_window(engine: ChunkFormerEngine) -> None:
    feats = engine.features(synthetic_speech(8.0, seed=4))
    options = DecodeOptions(8, 16, 8)
    dims = engine.dims
    chunks = feats[: 8 * 40 + 7].unfold(0, 8 * 8 + 7, 64).transpose(1, 2)
    att, conv = chunk_masks(chunks.size(0), 40, 0, options, dims.conv_context, feats.device)
    att_cache = torch.zeros(dims.n_layer, 16, dims.n_head, 2 * dims.head_dim)
    conv_cache = torch.zeros(dims.n_layer, dims.conv_context, dims.n_state)
    with torch.inference_mode():
        _, next_att, next_conv = engine.model.encoder(chunks, att, conv, 8, 16, 8, att_cache, conv_cache, keep=24)
    assert next_att is not None and next_conv is not None
    assert next_att.shape == att_cache.shape and next_conv.shape == conv_cache.shape
    for cache in (next_att, next_conv):
        assert cache.untyped_storage().nbytes() == cache.numel() * cache.element_size()


def test_position_keys_follow_new_weights(engine: ChunkFormerEngine) -> None:
    clip = synthetic_speech(4.0, seed=6)
    options = DecodeOptions(8, 16, 8)
    before = engine.decode_frames(clip, options, keep_logprobs=True).logprobs
    linear_pos = engine.model.encoder.encoders[0].self_attn.linear_pos
    saved = linear_pos.weight.detach().clone()
    try:
        with torch.no_grad():
            linear_pos.weight.mul_(3.0)
        after = engine.decode_frames(clip, options, keep_logprobs=True).logprobs
        assert before is not None and after is not None
        assert not torch.allclose(before, after)
    finally:
        with torch.no_grad():
            linear_pos.weight.copy_(saved)
    restored = engine.decode_frames(clip, options, keep_logprobs=True).logprobs
    assert restored is not None and torch.equal(before, restored)
