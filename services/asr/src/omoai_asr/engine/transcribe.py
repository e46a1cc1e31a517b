"""Long-form and batched decoding: overlapping input chunks, key masks, windows and caches.

Both paths run the encoder over *chunks*: an utterance's normalised fbank (T, F) is cut into
overlapping pieces of ``8c + 7`` frames every ``8c`` frames, each of which subsamples to exactly
``c`` encoder frames. All chunks of a window (or of a whole batch of utterances) are encoded in
one forward pass; key masks keep every chunk inside its own utterance and inside
``[-offset, length)`` of it.

Long form (the reference's ``endless_decode``, here ``engine/streaming.py``): windows of ``8 * keep`` input frames, each with
``rel_right`` extra frames of right context (enough for every layer's right and convolution
context); a window keeps its first ``keep`` encoder frames (all of them in the last window) and
hands the next one its attention and convolution caches and the number of frames emitted so
far. ``keep = c * max(1, (int(tbd // 0.01) // 2) // c // 8)`` reproduces the reference for every
``total_batch_duration`` it accepts; the ``max(1, ...)`` is ours: below about 10.24 s (chunk 64)
the reference computes a window of zero frames and crashes, we use one chunk per window.

Transducer models (``model: transducer``) use the same windows, caches and offsets; the greedy
search (``engine/transducer.py``) then runs over the kept frames of each window in turn with
the predictor state carried from window to window, which is the reference's one search over
the concatenation of all windows' outputs (the search is causal in the frames). Masked
batches are searched as one batch of streams, each up to its own length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from omoai_gpu.memory import MemoryPolicy
from torch.nn import functional as F

from omoai_asr.engine.model import SUBSAMPLING, SUBSAMPLING_CONTEXT, ChunkFormer, subsampled_length
from omoai_asr.engine.options import DecodeOptions
from omoai_asr.engine.transducer import StreamEmissions, frame_path, greedy_search, project_encoder
from omoai_asr.geometry import max_batch_frames as max_batch_frames  # the engine's window budget
from omoai_asr.geometry import window_keep_frames as window_keep_frames


@dataclass(frozen=True)
class WindowPlan:
    """One long-form window over input (fbank) frames ``[start, stop)``."""

    start: int
    stop: int
    final: bool
    offset: int  # encoder frames emitted before this window

    @property
    def n_frames(self) -> int:
        return self.stop - self.start


@dataclass
class WindowStats:
    """What happened in one window (mirrors the fixture's ``windows`` entries)."""

    input_frames: int
    encoder_frames: int
    n_chunks: int
    kept_frames: int
    offset_after: int  # offset + encoder_frames, as the reference's forward returns it


@dataclass
class LongFormResult:
    """Frame-level outputs of one utterance."""

    #: (T',) int64 token id per encoder frame: CTC's argmax path; for a transducer the first token the
    #: search emitted in that frame (blank where it emitted none).
    frame_tokens: np.ndarray
    encoder_out: torch.Tensor | None = None  # (T', D) float32 on CPU, when asked for
    logprobs: torch.Tensor | None = None  # (T', V) float32 on CPU, when asked for (CTC only)
    windows: list[WindowStats] = field(default_factory=list)
    emissions: StreamEmissions | None = None  # transducer: every emitted token and its frame

    @property
    def n_frames(self) -> int:
        return int(self.frame_tokens.size)


def _transducer_result(emissions: StreamEmissions, n_frames: int) -> LongFormResult:
    return LongFormResult(frame_tokens=frame_path(emissions, n_frames), emissions=emissions)


def reference_batches(frame_counts: Sequence[int], options: DecodeOptions) -> list[list[int]]:
    """The one batching rule (the reference's ``batch_decode`` grouping): in input order, an
    utterance joins the batch and the batch is decoded once its fbank frames reach the budget
    (so the utterance that crosses it is in the batch), and at the end. A batch therefore holds
    less than the budget plus one utterance of at most one window."""
    budget = max_batch_frames(options)
    batches: list[list[int]] = []
    group: list[int] = []
    left = budget
    for i, n in enumerate(frame_counts):
        group.append(i)
        left -= n
        if left <= 0 or i == len(frame_counts) - 1:
            batches.append(group)
            group, left = [], budget
    return batches


def right_context_frames(options: DecodeOptions, n_layer: int, conv_context: int) -> int:
    """Input frames of right context a window needs so that kept frames see all they would."""
    r = max(options.right_context, conv_context)
    return (r + max(options.chunk_size, r) * (n_layer - 1)) * SUBSAMPLING


def plan_windows(
    n_frames: int, options: DecodeOptions, n_layer: int, conv_context: int, *, start: int = 0, offset: int = 0
) -> list[WindowPlan]:
    """The reference's window boundaries, without its windows that produce no frame.

    ``start`` and ``offset`` continue a plan from one of its windows (the rest of an utterance
    whose first windows are decoded: live decoding).
    """
    keep = window_keep_frames(options)
    step = keep * SUBSAMPLING
    right = right_context_frames(options, n_layer, conv_context)
    plans: list[WindowPlan] = []
    while start < n_frames:
        stop = min(min(start + step + SUBSAMPLING - 1, n_frames) + right, n_frames)
        final = start + right >= n_frames
        produced = subsampled_length(stop - start)
        if produced == 0:
            # Only a tail of < 15 frames is left: it has no frame of its own. The reference
            # still runs it and appends chunk-padding garbage; we stop.
            break
        plans.append(WindowPlan(start, stop, final, offset))
        if final:
            break
        offset += min(produced, keep)
        start += step
    return plans


def chunk_features(feats: torch.Tensor, chunk: int) -> torch.Tensor:
    """(T, F) -> (n_chunks, 8c + 7, F) overlapping chunks, the last one zero-padded."""
    size = (chunk - 1) * SUBSAMPLING + SUBSAMPLING_CONTEXT
    step = chunk * SUBSAMPLING
    t = feats.size(0)
    pad = (step - (t - size) % step) % step if t >= size else size - t
    padded = F.pad(feats, (0, 0, 0, pad))
    return padded.unfold(0, size, step).transpose(1, 2)


def chunk_masks(
    n_chunks: int, length: int, offset: int, options: DecodeOptions, conv_context: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Key masks of one utterance's chunks: attention (n, l+c+r) and convolution (n, c+2L).

    A key at utterance frame t (negative: the carried cache) is valid when
    ``-offset <= t < length``; the convolution also never looks more than r frames past its
    chunk (the reference's bound when r < L).
    """
    c, lft, rgt = options.chunk_size, options.left_context, options.right_context
    base = torch.arange(n_chunks, device=device).unsqueeze(1) * c  # (n, 1) first frame of chunk
    t_att = base - lft + torch.arange(lft + c + rgt, device=device)
    att = (t_att >= -offset) & (t_att < length)
    t_conv = base - conv_context + torch.arange(c + 2 * conv_context, device=device)
    conv = (t_conv >= -offset) & (t_conv < length) & (t_conv < base + c + rgt)
    return att, conv


def _encode(
    model: ChunkFormer,
    pieces: Sequence[tuple[torch.Tensor, int]],
    options: DecodeOptions,
    att_cache: torch.Tensor | None,
    conv_cache: torch.Tensor | None,
    keep: int,
    *,
    streams: bool = False,
) -> tuple[list[torch.Tensor], list[int], torch.Tensor | None, torch.Tensor | None]:
    """Encode several utterance pieces ``(feats (T, F), offset)`` in one masked forward pass.

    Returns each piece's encoder output (T'_i, D), chunk counts, and the next caches. With
    ``streams`` each piece continues its own utterance from its own caches (S, layers, ...).
    """
    dims = model.dims
    chunks, att_masks, conv_masks, n_chunks, lengths = [], [], [], [], []
    for feats, offset in pieces:
        x = chunk_features(feats, options.chunk_size)
        length = subsampled_length(feats.size(0))
        att, conv = chunk_masks(x.size(0), length, offset, options, dims.conv_context, feats.device)
        chunks.append(x)
        att_masks.append(att)
        conv_masks.append(conv)
        n_chunks.append(x.size(0))
        lengths.append(length)
    xs = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
    out, att_cache, conv_cache = model.encoder(
        xs,
        torch.cat(att_masks),
        torch.cat(conv_masks),
        options.chunk_size,
        options.left_context,
        options.right_context,
        att_cache,
        conv_cache,
        keep,
        n_chunks if streams else None,
    )
    outs = [o.reshape(-1, dims.n_state)[:length] for o, length in zip(out.split(n_chunks), lengths, strict=True)]
    return outs, n_chunks, att_cache, conv_cache


def batch_decode(
    model: ChunkFormer,
    feats: Sequence[torch.Tensor],
    options: DecodeOptions,
    policy: MemoryPolicy,
    *,
    keep_encoder_out: bool = False,
    keep_logprobs: bool = False,
) -> list[LongFormResult]:
    """Decode several short utterances (each at most one window) in one masked forward pass.

    This is the reference's ``batch_decode`` forward: zero caches, no windows. Utterances too
    short for one encoder frame get an empty result and take no part in the pass.
    """
    dims = model.dims
    transducer = dims.is_transducer
    empty = np.zeros(0, dtype=np.int64)
    results = [
        _transducer_result(StreamEmissions(empty, empty), 0) if transducer else LongFormResult(frame_tokens=empty)
        for _ in feats
    ]
    active = [i for i, f in enumerate(feats) if subsampled_length(f.size(0)) > 0]
    if keep_encoder_out:
        for r in results:
            r.encoder_out = torch.zeros(0, dims.n_state)
    if keep_logprobs and not transducer:
        for r in results:
            r.logprobs = torch.zeros(0, dims.n_vocab)
    if not active:
        return results
    with policy.inference():
        outs, n_chunks, _, _ = _encode(model, [(feats[i], 0) for i in active], options, None, None, 0)
        lengths = [o.size(0) for o in outs]
        if transducer:
            # The reference's batch_greedy_search: outputs zero-padded to the longest, one search
            # over all streams, each up to its own length.
            padded = torch.nn.utils.rnn.pad_sequence([project_encoder(model, o) for o in outs], batch_first=True)
            found, _ = greedy_search(model, padded, torch.tensor(lengths, device=padded.device))
            for j, i in enumerate(active):
                r = _transducer_result(found[j], lengths[j])
                r.windows = [WindowStats(feats[i].size(0), lengths[j], n_chunks[j], lengths[j], lengths[j])]
                if keep_encoder_out:
                    r.encoder_out = outs[j].float().cpu()
                results[i] = r
            policy.window_done()
            return results
        assert model.ctc is not None
        frames = torch.cat(outs)  # (sum T', D)
        logp_parts = None
        if keep_logprobs:
            logp = model.ctc(frames)  # (sum T', V)
            paths = logp.argmax(dim=-1).cpu().numpy().astype(np.int64)
            logp_parts = logp.float().cpu().split(lengths)
        else:
            paths = model.ctc.greedy(frames).cpu().numpy().astype(np.int64)
        bounds = np.cumsum([0, *lengths])
        for j, i in enumerate(active):
            r = results[i]
            r.frame_tokens = paths[bounds[j] : bounds[j + 1]]
            r.windows = [WindowStats(feats[i].size(0), lengths[j], n_chunks[j], lengths[j], lengths[j])]
            if keep_encoder_out:
                r.encoder_out = outs[j].float().cpu()
            if logp_parts is not None:
                r.logprobs = logp_parts[j]
        policy.window_done()
    return results
