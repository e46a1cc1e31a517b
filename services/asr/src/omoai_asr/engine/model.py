"""The ChunkFormer network: depthwise-striding subsampling, chunked relative-position Conformer
blocks with left/right context and carried caches, and either the CTC head or the transducer's
LSTM predictor and joint network.

Module and parameter names follow the official checkpoints (``encoder.embed.conv.0.weight``,
``encoder.encoders.3.self_attn.linear_q.weight``, ``ctc.ctc_lo.weight``,
``predictor.rnn.weight_ih_l0``, ``joint.ffn_out.weight`` ...) so a state dict loads without
renaming. Only the inference path of the reference's masked, overlapping-chunk forward
("parallel chunk") is implemented; training code and the attention decoder are not. The
transducer search itself lives in ``engine/transducer.py``.

Shapes: N chunks (of all utterances of a window or batch, flattened), c chunk size, l/r left and
right attention context, L = kernel // 2 convolution context, D model width, h heads, dk = D / h.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from omoai_asr.engine.kernels import linear, lstm_step
from omoai_asr.geometry import SUBSAMPLING as SUBSAMPLING  # re-exported: transcribe.py imports it from here

SUBSAMPLING_CONTEXT = 15  # input frames one output frame needs (receptive field)


@dataclass(frozen=True)
class TransducerDimensions:
    """The predictor and joint network of a ``model: transducer`` checkpoint.

    The predictor is the reference's ``RNNPredictor`` with an LSTM (the only kind its greedy
    search can run): embedding, ``num_layers`` LSTM layers, a linear projection. The joint is
    ``TransducerJoint`` in ``add`` mode: ``ffn_out(act(post_ffn(enc_ffn(e) + pred_ffn(p))))``,
    or with ``hat_joint`` the HAT factorisation into a blank and a token distribution.
    """

    embed_size: int = 256  # predictor_conf.embed_size
    hidden_size: int = 256  # predictor_conf.hidden_size
    pred_output_size: int = 256  # predictor_conf.output_size (= joint_conf.pred_output_size)
    num_layers: int = 1  # predictor_conf.num_layers
    rnn_bias: bool = True  # predictor_conf.bias
    join_dim: int = 512  # joint_conf.join_dim
    prejoin_linear: bool = True  # joint_conf.prejoin_linear: enc_ffn and pred_ffn
    postjoin_linear: bool = False  # joint_conf.postjoin_linear: post_ffn
    activation: str = "tanh"  # joint_conf.activation
    hat_joint: bool = False  # joint_conf.hat_joint
    hat_activation: str = "tanh"  # joint_conf.hat_activation


@dataclass(frozen=True)
class ModelDimensions:
    """Everything that shapes a ChunkFormer model (from ``config.yaml``).

    ``transducer`` is None for CTC models (``model: asr_model``) and the predictor/joint
    dimensions for ``model: transducer``.
    """

    n_mels: int = 80  # input_dim
    n_state: int = 512  # encoder_conf.output_size
    n_head: int = 8  # encoder_conf.attention_heads
    n_ffn: int = 2048  # encoder_conf.linear_units
    n_layer: int = 17  # encoder_conf.num_blocks
    cnn_kernel: int = 15  # encoder_conf.cnn_module_kernel
    n_vocab: int = 6992  # output_dim
    cnn_norm: str = "layer_norm"  # encoder_conf.cnn_module_norm: layer_norm | batch_norm
    activation: str = "swish"  # encoder_conf.activation_type
    normalize_before: bool = True  # pre-norm blocks (and the final after_norm)
    macaron: bool = True  # encoder_conf.macaron_style: a second, half-step feed-forward
    use_cnn: bool = True  # encoder_conf.use_cnn_module
    final_norm_type: str = "layer_norm"  # encoder_conf.layer_norm_type: layer_norm | rms_norm
    norm_eps: float = 1e-5  # encoder_conf.norm_eps (final norm only)
    transducer: TransducerDimensions | None = None

    @property
    def is_transducer(self) -> bool:
        return self.transducer is not None

    @property
    def conv_context(self) -> int:
        """Frames of convolution context on each side of a chunk (the reference's lorder)."""
        return self.cnn_kernel // 2

    @property
    def head_dim(self) -> int:
        return self.n_state // self.n_head

    @property
    def subsampled_mels(self) -> int:
        return subsampled_length(self.n_mels)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "hardtanh": nn.Hardtanh,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "selu": nn.SELU,
    "swish": nn.SiLU,
    "gelu": nn.GELU,
}


def subsampled_length(n_frames: int) -> int:
    """Output frames of the 8x subsampling for ``n_frames`` inputs (negative inputs clamp to 0)."""
    return max(0, (n_frames - 7) // SUBSAMPLING)


class RMSNorm(nn.Module):
    """RMS norm with a unit offset on the weight (``x * (1 + w)``), as the reference's."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float()
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return y.type_as(x) * (1 + self.weight)


class Subsampling(nn.Module):
    """(N, T, n_mels) -> (N, (T - 7) // 8, D), scaled by sqrt(D) as the positional stage does.

    The network is the reference's (conv 3x3/2, ReLU, then twice depthwise 3x3/2, pointwise,
    ReLU), computed channels-last: the first convolution has a single input channel, so it is
    one (positions, 9) x (9, C) GEMM writing (n, T', F', C) directly (oneDNN's direct kernel for
    it is twice as slow), the depthwise convolutions run on channels-last tensors (4x faster than
    on NCHW on CPU) and the pointwise ones are plain GEMMs over (positions, C).
    """

    # The first convolution's output (N, T/2, F/2, C) is the largest activation of the whole
    # model (4.4 GB in fp32 for a 900 s window of large-vie). Chunks are independent here, so
    # they go through in groups whose first output stays under this many elements: the same
    # result with a bounded peak, and below the 2**31 indexing limit of some kernels. On an
    # accelerator 2**27 (256 MB in fp16, 26 chunks of large-vie per group: few launches); on
    # CPU one chunk at a time (20 MB) is also the fastest, as more of it stays in cache.
    max_conv_elements = 2**27
    max_conv_elements_cpu = 2**22

    def __init__(self, dims: ModelDimensions) -> None:
        super().__init__()
        ch = dims.n_state
        self.conv = nn.Sequential(
            nn.Conv2d(1, ch, 3, 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 3, 2, groups=ch),
            nn.Conv2d(ch, ch, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 3, 2, groups=ch),
            nn.Conv2d(ch, ch, 1),
            nn.ReLU(inplace=True),
        )
        self.out = nn.Linear(ch * dims.subsampled_mels, dims.n_state)
        self.xscale = math.sqrt(dims.n_state)
        self.channels = ch
        self._relu = nn.ReLU()

    def _pointwise_relu(self, x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
        """(n, C, t, f) channels-last -> the same after a 1x1 convolution and ReLU, as a GEMM."""
        n, c, t, f = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(n * t * f, c)  # a view when x is channels-last
        y = linear(rows, conv.weight.view(c, c), conv.bias, self._relu)
        return y.view(n, t, f, c).permute(0, 3, 1, 2)

    def _one_group(self, x: torch.Tensor) -> torch.Tensor:
        n, t_in, f_in = x.shape
        first, dw1, pw1, dw2, pw2 = (cast(nn.Conv2d, self.conv[i]) for i in (0, 2, 3, 5, 6))
        c = self.channels
        t, f = (t_in - 3) // 2 + 1, (f_in - 3) // 2 + 1
        patches = x.unfold(1, 3, 2).unfold(2, 3, 2).reshape(n * t * f, 9)  # 3x3 stride-2 patches
        assert first.bias is not None
        y = torch.addmm(first.bias, patches.to(first.weight.dtype), first.weight.view(c, 9).t())
        y = y.relu_().view(n, t, f, c).permute(0, 3, 1, 2)  # (n, C, t, f), channels-last memory
        y = self._pointwise_relu(dw1(y), pw1)
        y = self._pointwise_relu(dw2(y), pw2)  # (n, C, t', f')
        n, c, t, f = y.shape
        return linear(y.transpose(1, 2).reshape(n, t, c * f), self.out.weight, self.out.bias) * self.xscale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_item = self.channels * ((x.size(1) - 1) // 2) * ((x.size(2) - 1) // 2)
        limit = self.max_conv_elements_cpu if x.device.type == "cpu" else self.max_conv_elements
        group = max(1, limit // max(per_item, 1))
        if x.size(0) <= group:
            return self._one_group(x)
        return torch.cat([self._one_group(part) for part in x.split(group)])


def relative_positions(dims: ModelDimensions, chunk: int, left: int, right: int) -> torch.Tensor:
    """Sinusoidal embeddings of relative positions ``chunk+left-1`` down to ``-(chunk+right-1)``.

    Returns (1, 2 * chunk + left + right - 1, D): the table the reference slices from its
    5000-entry relative positional encoding (built the same way, in float32).
    """
    positions = torch.arange(chunk + left - 1, -(chunk + right), -1, dtype=torch.float32)
    magnitude = positions.abs().unsqueeze(1)
    sign = torch.sign(positions).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dims.n_state, 2, dtype=torch.float32) * -(math.log(10000.0) / dims.n_state))
    angle = magnitude * div_term  # (P, D/2)
    table = torch.zeros(positions.numel(), dims.n_state)
    # sin(-x) = -sin(x), cos(-x) = cos(x): the reference evaluates them on the negated angle.
    table[:, 0::2] = torch.where(sign < 0, torch.sin(-angle), torch.sin(angle))
    table[:, 1::2] = torch.cos(angle)
    return table.unsqueeze(0)


class ChunkAttention(nn.Module):
    """Multi-head self-attention with relative positions over [left | chunk | right] keys."""

    # The position scores (h, c, 2c+l+r-1) and the additive mask of a chunk are computed for
    # groups of chunks with at most this many score elements: on CPU 4 MB (five chunks of
    # large-vie), which stays in cache and bounds the peak; on an accelerator 2**28 (one or
    # two groups per window, few launches).
    max_score_elements = 2**28
    max_score_elements_cpu = 2**20

    def __init__(self, dims: ModelDimensions) -> None:
        super().__init__()
        d = dims.n_state
        self.h = dims.n_head
        self.d_k = dims.head_dim
        self.linear_q = nn.Linear(d, d)
        self.linear_k = nn.Linear(d, d)
        self.linear_v = nn.Linear(d, d)
        self.linear_out = nn.Linear(d, d)
        self.linear_pos = nn.Linear(d, d, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(self.h, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(self.h, self.d_k))

    def forward(
        self,
        x: torch.Tensor,
        key_invalid: torch.Tensor,
        pos: torch.Tensor,
        cache: torch.Tensor | None,
        left: int,
        right: int,
        keep: int,
        streams: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (N, c, D), key_invalid (N, 1, 1, l+c+r) bool, cache (l, h, 2dk), pos (h, dk, 2c+l+r-1):
        the relative-position table through ``linear_pos`` (:meth:`project_positions`).

        Every chunk attends to the l frames before it and the r after it in the flattened
        sequence of all chunks, the cache standing before the first chunk. Returns the output
        (N, c, D) and the next cache: the l frames before position ``keep`` (None without cache).
        With ``streams`` (chunks per stream, summing to N) the chunks are S independent streams,
        each with its own cache (S, l, h, 2dk) before its first chunk; the next caches are
        (S, l, h, 2dk).
        """
        n, c, d = x.shape
        h, dk = self.h, self.d_k
        q = linear(x, self.linear_q.weight, self.linear_q.bias).view(n, c, h, dk)
        k = linear(x, self.linear_k.weight, self.linear_k.bias).view(n * c, h, dk)
        v = linear(x, self.linear_v.weight, self.linear_v.bias).view(n * c, h, dk)
        kv = torch.cat([k, v], dim=-1)  # (N*c, h, 2dk)
        window = left + c + right
        if streams is not None:
            kv, new_cache = _stream_windows(kv, cache, streams, c, left, right, keep)
        elif cache is None:
            kv = F.pad(kv, (0, 0, 0, 0, left, right))
            new_cache = None
        else:
            kv = torch.cat([cache.to(kv.dtype), kv])
            new_cache = _frames_before(kv, keep, left, dim=0)
            kv = F.pad(kv, (0, 0, 0, 0, 0, right))
        if streams is None:
            kv = kv.unfold(0, window, c)  # (N, h, 2dk, l+c+r), overlapping views, no copy
        k, v = kv.transpose(2, 3).split(dk, dim=-1)  # (N, h, l+c+r, dk) each

        # Position scores of every query against the shared table in one GEMM per head (no
        # per-chunk broadcast copy of the table), 1/sqrt(dk) folded into the small query.
        scale = 1.0 / math.sqrt(dk)
        q_v = ((q + self.pos_bias_v) * scale).to(v.dtype).view(n * c, h, dk).transpose(0, 1)  # (h, N*c, dk)
        q_u = (q + self.pos_bias_u).to(v.dtype).transpose(1, 2)  # (N, h, c, dk)
        pos = pos.to(v.dtype)
        limit = self.max_score_elements_cpu if x.device.type == "cpu" else self.max_score_elements
        group = max(1, limit // (h * c * pos.size(-1)))
        parts = []
        for lo in range(0, n, group):
            g = min(group, n - lo)
            bd = _relative_shift(torch.bmm(q_v[:, lo * c : (lo + g) * c], pos), g, c, window)  # (g, h, c, l+c+r)
            # Invalid keys get the most negative finite value rather than -inf: their weights
            # are still exactly 0, and a query whose keys are all invalid (only padding) stays
            # finite. One pass that also makes the shifted view contiguous.
            bias = torch.where(key_invalid[lo : lo + g], torch.finfo(bd.dtype).min, bd)
            # softmax(q_u k^T / sqrt(dk) + bias) v in one fused kernel (float32 softmax inside).
            parts.append(
                F.scaled_dot_product_attention(
                    q_u[lo : lo + g], k[lo : lo + g], v[lo : lo + g], attn_mask=bias, scale=scale
                )
            )
        out = parts[0] if len(parts) == 1 else torch.cat(parts)  # (N, h, c, dk)
        out = out.transpose(1, 2).reshape(n, c, d)
        return linear(out, self.linear_out.weight, self.linear_out.bias), new_cache

    def project_positions(self, pos_emb: torch.Tensor) -> torch.Tensor:
        """(1, P, D) relative-position table -> (h, dk, P), the keys of the position scores."""
        return self.linear_pos(pos_emb).view(-1, self.h, self.d_k).permute(1, 2, 0)


def _frames_before(x: torch.Tensor, keep: int, size: int, dim: int) -> torch.Tensor:
    """The ``size`` entries of ``x`` (cache first) that precede kept frame ``keep`` along ``dim``.

    The reference slices ``x[:keep + size][-size:]``; near the end of the input that is the
    last ``size`` entries.
    """
    end = min(keep + size, x.size(dim))
    # A copy, not a view: a view would keep the whole window's keys/values (or GLU outputs) of
    # every layer alive until the next window, 760 MB for a 600 s window of large-vie.
    return x.narrow(dim, max(end - size, 0), min(size, end)).clone()


def _stream_windows(
    frames: torch.Tensor,
    caches: torch.Tensor | None,
    streams: Sequence[int],
    c: int,
    left: int,
    right: int,
    keep: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Key windows of S independent streams, each with its own cache before its first chunk.

    frames (N*c, ...) of all streams' chunks in order, caches (S, left, ...) (None: zeros),
    ``streams`` chunks per stream. Returns the windows (N, ..., left+c+right), as the single-stream
    ``unfold`` gives them but copied, and the next caches (S, left, ...).
    """
    windows: list[torch.Tensor] = []
    next_caches: list[torch.Tensor] = []
    for s, part in enumerate(frames.split([n * c for n in streams])):
        cache = part.new_zeros((left, *part.shape[1:])) if caches is None else caches[s].to(part.dtype)  # (left, ...)
        seq = torch.cat([cache, part])
        next_caches.append(_frames_before(seq, keep, left, dim=0))
        pad = [0, 0] * (seq.dim() - 1) + [0, right]
        windows.append(F.pad(seq, pad).unfold(0, left + c + right, c))
    return torch.cat(windows), torch.stack(next_caches)


def _relative_shift(x: torch.Tensor, n: int, c: int, window: int) -> torch.Tensor:
    """(h, N*c, P) scores of queries against positions -> (N, h, c, window) against keys (a view).

    Query i and key j (both counted from the start of the key window, the query offset by the
    left context) are ``l + i - j`` apart; that is column ``c - 1 + j - i`` of ``x``.
    """
    h, _, p = x.shape
    x = x.contiguous()
    return x.as_strided((n, h, c, window), (c * p, n * c * p, p - 1, 1), storage_offset=x.storage_offset() + c - 1)


class ChunkConvolution(nn.Module):
    """Conformer convolution module over chunks with L frames of context on both sides."""

    def __init__(self, dims: ModelDimensions, activation: nn.Module) -> None:
        super().__init__()
        d = dims.n_state
        self.channels = d
        self.context = dims.conv_context
        self.pointwise_conv1 = nn.Conv1d(d, 2 * d, 1)
        self.depthwise_conv = nn.Conv1d(d, d, dims.cnn_kernel, groups=d)
        self.use_layer_norm = dims.cnn_norm == "layer_norm"
        self.norm: nn.Module = nn.LayerNorm(d) if self.use_layer_norm else nn.BatchNorm1d(d)
        self.pointwise_conv2 = nn.Conv1d(d, d, 1)
        self.activation = activation

    def forward(
        self,
        x: torch.Tensor,
        invalid: torch.Tensor,
        cache: torch.Tensor | None,
        keep: int,
        streams: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (N, c, D), invalid (N, 1, c+2L) bool over [L | chunk | L], cache (L, D).

        Returns (N, c, D) and the next cache: the L GLU outputs before position ``keep``.
        With ``streams`` (chunks per stream) the cache is per stream, (S, L, D), as in
        :meth:`ChunkAttention.forward`.
        Frames stay (N, c, D) (time-major) except inside the depthwise convolution, so the
        pointwise convolutions are plain GEMMs and no layout copies are needed around them.
        """
        n, c, d = x.shape
        lc = self.context
        pw1, pw2 = self.pointwise_conv1, self.pointwise_conv2
        x = F.glu(linear(x, pw1.weight.view(2 * d, d), pw1.bias), dim=-1)  # (N, c, D)
        flat = x.reshape(n * c, d)  # (N*c, D)
        if streams is not None:
            x, new_cache = _stream_windows(flat, cache, streams, c, lc, lc, keep)
        else:
            if cache is None:
                flat = F.pad(flat, (0, 0, lc, lc))
                new_cache = None
            else:
                flat = torch.cat([cache.to(flat.dtype), flat])
                new_cache = _frames_before(flat, keep, lc, dim=0)
                flat = F.pad(flat, (0, 0, 0, lc))
            x = flat.unfold(0, c + 2 * lc, c)  # (N, D, c+2L) view
        x = self.depthwise_conv(x.masked_fill(invalid, 0.0))  # (N, D, c)
        if self.use_layer_norm:
            x = self.activation(self.norm(x.transpose(1, 2)))  # (N, c, D)
        else:
            x = self.activation(self.norm(x)).transpose(1, 2)
        x = linear(x, pw2.weight.view(d, d), pw2.bias)
        return x.masked_fill(invalid[:, :, lc : lc + c].transpose(1, 2), 0.0), new_cache


class FeedForward(nn.Module):
    def __init__(self, dims: ModelDimensions, activation: nn.Module) -> None:
        super().__init__()
        self.w_1 = nn.Linear(dims.n_state, dims.n_ffn)
        self.activation = activation
        self.w_2 = nn.Linear(dims.n_ffn, dims.n_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(linear(x, self.w_1.weight, self.w_1.bias, self.activation), self.w_2.weight, self.w_2.bias)


class ChunkFormerBlock(nn.Module):
    """Macaron feed-forward, chunk attention, convolution, feed-forward, final norm."""

    def __init__(self, dims: ModelDimensions) -> None:
        super().__init__()
        d = dims.n_state
        activation = ACTIVATIONS[dims.activation]()
        self.normalize_before = dims.normalize_before
        self.self_attn = ChunkAttention(dims)
        self.feed_forward = FeedForward(dims, activation)
        self.feed_forward_macaron = FeedForward(dims, activation) if dims.macaron else None
        self.conv_module = ChunkConvolution(dims, activation) if dims.use_cnn else None
        self.norm_ff = nn.LayerNorm(d, eps=1e-5)
        self.norm_mha = nn.LayerNorm(d, eps=1e-5)
        self.norm_ff_macaron = nn.LayerNorm(d, eps=1e-5) if dims.macaron else None
        self.norm_conv = nn.LayerNorm(d, eps=1e-5) if dims.use_cnn else None
        self.norm_final = nn.LayerNorm(d, eps=1e-5) if dims.use_cnn else None
        self.ff_scale = 0.5 if dims.macaron else 1.0

    def _residual(self, x: torch.Tensor, norm: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if self.normalize_before:
            return x + fn(norm(x))
        return norm(x + fn(x))

    def forward(
        self,
        x: torch.Tensor,
        att_invalid: torch.Tensor,
        conv_invalid: torch.Tensor,
        pos: torch.Tensor,
        att_cache: torch.Tensor | None,
        conv_cache: torch.Tensor | None,
        left: int,
        right: int,
        keep: int,
        streams: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """x (N, c, D) -> (N, c, D), next attention cache (l, h, 2dk), next conv cache (L, D)
        (per stream, with a leading S, when ``streams`` gives the chunks of S streams).

        att_invalid (N, 1, 1, l+c+r) and conv_invalid (N, 1, c+2L): keys that must not be seen;
        pos (h, dk, 2c+l+r-1) this layer's projected relative positions.
        """
        if self.feed_forward_macaron is not None:
            assert self.norm_ff_macaron is not None
            ff = self.feed_forward_macaron
            x = self._residual(x, self.norm_ff_macaron, lambda y: self.ff_scale * ff(y))

        new_att_cache: torch.Tensor | None = None

        def attend(y: torch.Tensor) -> torch.Tensor:
            nonlocal new_att_cache
            out, new_att_cache = self.self_attn(y, att_invalid, pos, att_cache, left, right, keep, streams)
            return out

        x = self._residual(x, self.norm_mha, attend)

        new_conv_cache: torch.Tensor | None = None
        if self.conv_module is not None:
            assert self.norm_conv is not None and self.norm_final is not None
            conv = self.conv_module

            def convolve(y: torch.Tensor) -> torch.Tensor:
                nonlocal new_conv_cache
                out, new_conv_cache = conv(y, conv_invalid, conv_cache, keep, streams)
                return out

            x = self._residual(x, self.norm_conv, convolve)

        x = self._residual(x, self.norm_ff, lambda y: self.ff_scale * self.feed_forward(y))
        if self.norm_final is not None:
            x = self.norm_final(x)
        return x, new_att_cache, new_conv_cache


class ChunkFormerEncoder(nn.Module):
    """Subsampling plus ``n_layer`` ChunkFormer blocks (``encoder.*`` in the checkpoint)."""

    def __init__(self, dims: ModelDimensions) -> None:
        super().__init__()
        self.dims = dims
        self.embed = Subsampling(dims)
        self.encoders = nn.ModuleList(ChunkFormerBlock(dims) for _ in range(dims.n_layer))
        self.after_norm: nn.Module = (
            RMSNorm(dims.n_state, dims.norm_eps)
            if dims.final_norm_type == "rms_norm"
            else nn.LayerNorm(dims.n_state, eps=dims.norm_eps)
        )
        self._position_keys: dict[tuple[object, ...], list[torch.Tensor]] = {}

    def _positions(
        self, chunk: int, left: int, right: int, device: torch.device, dtype: torch.dtype
    ) -> list[torch.Tensor]:
        """Each layer's projected relative-position keys (h, dk, P), once per geometry.

        They depend only on the weights and the chunk geometry, so ``linear_pos`` runs once,
        not per layer and window; computed in float32 (outside autocast), then cast. The
        weights' versions are part of the key, so loading new weights invalidates the entry.
        """
        attentions = [cast(ChunkFormerBlock, layer).self_attn for layer in self.encoders]
        versions = tuple(a.linear_pos.weight._version for a in attentions)
        key = (chunk, left, right, device, dtype, versions)
        projected = self._position_keys.get(key)
        if projected is None:
            with torch.inference_mode(), torch.autocast(device.type, enabled=False):
                table = relative_positions(self.dims, chunk, left, right).to(device)
                projected = [a.project_positions(table).to(dtype) for a in attentions]
            if len(self._position_keys) > 16:
                self._position_keys.clear()
            self._position_keys[key] = projected
        return projected

    def forward(
        self,
        chunks: torch.Tensor,
        att_mask: torch.Tensor,
        conv_mask: torch.Tensor,
        chunk: int,
        left: int,
        right: int,
        att_cache: torch.Tensor | None = None,
        conv_cache: torch.Tensor | None = None,
        keep: int = 0,
        streams: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Encode normalised feature chunks.

        chunks (N, 8c+7, n_mels) overlapping input chunks, att_mask (N, l+c+r) and conv_mask
        (N, c+2L) key validity, att_cache (layers, l, h, 2dk) and conv_cache (layers, L, D) from
        the previous window (None: zeros, no cache returned), ``keep`` the encoder frames of this
        window that the next window continues from. Returns (N, c, D) and the next caches.

        ``streams`` (chunks per stream, summing to N): the windows of S independent streams in
        one pass (live decoding), each continuing from its own caches, att_cache
        (S, layers, l, h, 2dk) and conv_cache (S, layers, L, D) (None: zeros); the next caches
        are always returned, per stream, in the same layout.
        """
        x = self.embed(chunks)  # (N, c, D)
        positions = self._positions(chunk, left, right, x.device, x.dtype)
        att_invalid = ~att_mask[:, None, None, :]  # once for all layers
        conv_invalid = ~conv_mask[:, None, :]
        att_caches: list[torch.Tensor] = []
        conv_caches: list[torch.Tensor] = []
        for i, layer in enumerate(self.encoders):
            layer_dim = 0 if streams is None else 1
            x, a, cv = layer(
                x,
                att_invalid,
                conv_invalid,
                positions[i],
                None if att_cache is None else att_cache.select(layer_dim, i),
                None if conv_cache is None else conv_cache.select(layer_dim, i),
                left,
                right,
                keep,
                streams,
            )
            if a is not None:
                att_caches.append(a)
            if cv is not None:
                conv_caches.append(cv)
        if self.dims.normalize_before:
            x = self.after_norm(x)
        layer_dim = 0 if streams is None else 1
        next_att = torch.stack(att_caches, dim=layer_dim) if att_caches else None
        next_conv = torch.stack(conv_caches, dim=layer_dim) if conv_caches else None
        return x, next_att, next_conv


class CtcHead(nn.Module):
    """``ctc.ctc_lo``: (..., D) -> (..., V) log-probabilities, or the greedy path alone."""

    # Frames per block of logits in :meth:`greedy`, where a whole 900 s window (11200, V) and
    # its log-softmax would be 630 MB in fp32 for V = 6992: (256, V) = 7 MB on CPU, and
    # (8192, V) = 115 MB in fp16 on an accelerator (fewer, larger GEMMs).
    block_frames = 8192
    block_frames_cpu = 256

    def __init__(self, dims: ModelDimensions) -> None:
        super().__init__()
        self.ctc_lo = nn.Linear(dims.n_state, dims.n_vocab)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.ctc_lo.weight, self.ctc_lo.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.logits(x), dim=-1)

    def greedy(self, x: torch.Tensor) -> torch.Tensor:
        """(T, D) -> (T,) int64 argmax token per frame, on x's device.

        log-softmax subtracts one constant per frame, so the argmax of the logits is the
        argmax of the log-probabilities: no (T, V) normalisation pass, and logits only in
        blocks of ``block_frames`` (``block_frames_cpu``) frames.
        """
        block = self.block_frames_cpu if x.device.type == "cpu" else self.block_frames
        if x.size(0) <= block:
            return self.logits(x).argmax(dim=-1)
        return torch.cat([self.logits(part).argmax(dim=-1) for part in x.split(block)])


class RnnPredictor(nn.Module):
    """``predictor.*``: the label history as an LSTM state; (B,) last tokens -> (B, P) outputs.

    The reference's ``RNNPredictor.forward_step`` (dropouts are inference no-ops). The state is
    ``(h, c)``, each (num_layers, B, hidden), zeros at the start of an utterance.
    """

    def __init__(self, n_vocab: int, dims: TransducerDimensions) -> None:
        super().__init__()
        self.dims = dims
        # nn.Embedding's own initialisation, except on the meta device (checkpoint loading):
        # normal_ on a meta tensor imports torch's Python reference kernels, 67 MiB of resident
        # memory in every process that loads a transducer, for weights replaced anyway.
        weight = torch.empty(n_vocab, dims.embed_size)
        if not weight.is_meta:
            nn.init.normal_(weight)
        self.embed = nn.Embedding(n_vocab, dims.embed_size, _weight=weight)
        self.rnn = nn.LSTM(dims.embed_size, dims.hidden_size, dims.num_layers, bias=dims.rnn_bias, batch_first=True)
        self.projection = nn.Linear(dims.hidden_size, dims.pred_output_size)

    def initial_state(self, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (self.dims.num_layers, batch, self.dims.hidden_size)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def step(
        self, tokens: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """tokens (B,) int64, state (h, c) -> output (B, P) and the next state."""
        out, (h, c) = lstm_step(self.rnn, self.embed(tokens), state)  # out (B, H)
        return F.linear(out, self.projection.weight, self.projection.bias), (h, c)


class TransducerJoint(nn.Module):
    """``joint.*``: encoder and predictor outputs -> (..., V) logits (log-probs with HAT).

    Split in two so that the search never repeats work: :meth:`project_encoder` (``enc_ffn``)
    runs once over all encoder frames and :meth:`project_predictor` (``pred_ffn``) once per
    emitted token; :meth:`combine` then costs one activation and the output layer per step.
    """

    def __init__(self, n_vocab: int, enc_size: int, dims: TransducerDimensions) -> None:
        super().__init__()
        self.dims = dims
        j = dims.join_dim
        self.enc_ffn = nn.Linear(enc_size, j) if dims.prejoin_linear else None
        self.pred_ffn = nn.Linear(dims.pred_output_size, j) if dims.prejoin_linear else None
        self.post_ffn = nn.Linear(j, j) if dims.postjoin_linear else None
        self.activation = ACTIVATIONS[dims.activation]()
        if dims.hat_joint:
            self.ffn_out = None
            # nn.Sequential indices as in the reference (activation, dropout, linear[, logsigmoid]).
            self.blank_pred: nn.Sequential | None = nn.Sequential(nn.Tanh(), nn.Identity(), nn.Linear(j, 1))
            self.token_pred: nn.Sequential | None = nn.Sequential(
                ACTIVATIONS[dims.hat_activation](), nn.Identity(), nn.Linear(j, n_vocab - 1)
            )
        else:
            self.ffn_out = nn.Linear(j, n_vocab)
            self.blank_pred = None
            self.token_pred = None

    def project_encoder(self, enc: torch.Tensor) -> torch.Tensor:
        """(..., D) encoder frames -> (..., J)."""
        if self.enc_ffn is None:
            return enc
        return linear(enc, self.enc_ffn.weight, self.enc_ffn.bias)

    def project_predictor(self, pred: torch.Tensor) -> torch.Tensor:
        """(..., P) predictor outputs -> (..., J)."""
        if self.pred_ffn is None:
            return pred
        return F.linear(pred, self.pred_ffn.weight, self.pred_ffn.bias)

    def combine(self, enc_proj: torch.Tensor, pred_proj: torch.Tensor) -> torch.Tensor:
        """Projected encoder (..., J) plus projected predictor (broadcast) -> (..., V) scores.

        Without HAT these are logits (the reference takes log_softmax, which leaves the argmax
        alone); with HAT they are already log-probabilities.
        """
        x = enc_proj + pred_proj
        if self.post_ffn is not None:
            x = F.linear(x, self.post_ffn.weight, self.post_ffn.bias)
        if self.ffn_out is not None:
            # Plain F.linear: for the search's few rows per step oneDNN's fused path (used by
            # the encoder's large GEMMs) is several times slower than MKL's GEMV/GEMM.
            return F.linear(self.activation(x), self.ffn_out.weight, self.ffn_out.bias)
        assert self.blank_pred is not None and self.token_pred is not None
        blank = F.logsigmoid(self.blank_pred(x))  # (..., 1)
        scale = torch.clamp(1 - torch.exp(blank), min=1e-6)
        labels = F.log_softmax(self.token_pred(x), dim=-1) + torch.log(scale)
        return torch.cat([blank, labels], dim=-1)


class ChunkFormer(nn.Module):
    """Encoder plus CTC head, or encoder plus predictor and joint (transducer).

    The state dict keys of the official checkpoints. A transducer checkpoint also carries a CTC
    head and an attention decoder; greedy transducer decoding uses neither, so they are not
    built (and their weights are not loaded).
    """

    def __init__(self, dims: ModelDimensions) -> None:
        super().__init__()
        self.dims = dims
        self.encoder = ChunkFormerEncoder(dims)
        self.ctc: CtcHead | None = None
        self.predictor: RnnPredictor | None = None
        self.joint: TransducerJoint | None = None
        if dims.transducer is None:
            self.ctc = CtcHead(dims)
        else:
            self.predictor = RnnPredictor(dims.n_vocab, dims.transducer)
            self.joint = TransducerJoint(dims.n_vocab, dims.n_state, dims.transducer)
