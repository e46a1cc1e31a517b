"""Incremental long-form decoding: features arrive in pieces, windows are decoded as they complete.

A :class:`LongFormStream` is one utterance's decoder state: the normalised fbank frames not yet
consumed (from the next window's first frame on), the number of encoder frames emitted so far
(the window offset), the encoder's attention and convolution caches, and one collector for the
model's head (:class:`CtcCollector`: the argmax path; :class:`TransducerCollector`: the emissions
and the predictor state of the greedy search). Its windows are exactly the long-form windows of
:func:`~omoai_asr.engine.transcribe.plan_windows` over the whole utterance:

- a window that is not the last one (``8 * keep`` frames plus ``right_context_frames`` of
  right context) is *ready* as soon as all its frames have arrived: whatever comes later, the
  batch decode of the whole utterance has the same window with the same inputs;
- once the utterance is finished (its length known) the rest is planned as the batch decode
  plans it.

:func:`endless_decode`, the batch long-form decode, is this same code fed the whole utterance at
once and finished: a live stream's final result is the batch result by construction (tokens,
text, segment and word times), down to the bit on a single stream. :func:`decode_windows` runs
the windows of several streams in one masked forward pass, each continuing from its own caches
(``streams`` of :meth:`ChunkFormerEncoder.forward`), and their heads together.

Memory per stream is bounded whatever its length: the caches ((layers, l, h, 2dk) and
(layers, L, D)), the predictor state, at most one window's frames plus what arrived since, and
the collected path or emissions (8 bytes per encoder frame or token).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from omoai_gpu.memory import MemoryPolicy

from omoai_asr.engine.model import SUBSAMPLING, ChunkFormer
from omoai_asr.engine.transcribe import (
    LongFormResult,
    WindowPlan,
    WindowStats,
    _encode,
    plan_windows,
    right_context_frames,
    window_keep_frames,
)
from omoai_asr.engine.transducer import (
    SearchState,
    StreamEmissions,
    frame_path,
    greedy_search,
    initial_state,
    project_encoder,
)
from omoai_asr.geometry import DecodeOptions

__all__ = [
    "CtcCollector",
    "LongFormStream",
    "TransducerCollector",
    "decode_windows",
    "endless_decode",
    "open_stream",
]

_EMPTY = np.zeros(0, dtype=np.int64)


# -- one collector per head ------------------------------------------------------------------------


@dataclass
class CtcCollector:
    """The CTC head's output: the argmax path of the kept frames (and log-probs when asked for)."""

    keep_logprobs: bool = False
    paths: list[torch.Tensor] = field(default_factory=list)  # (T_w,) int64 per window, on the device
    logprobs: list[torch.Tensor] = field(default_factory=list)  # (T_w, V) float32 per window, on CPU

    def path(self) -> np.ndarray:
        """(T',) the argmax path so far, on the host."""
        if not self.paths:
            return _EMPTY
        return torch.cat(self.paths).cpu().numpy().astype(np.int64, copy=False)

    def fork(self) -> CtcCollector:
        return CtcCollector(self.keep_logprobs, list(self.paths), list(self.logprobs))


@dataclass
class TransducerCollector:
    """The transducer's emissions (frames in utterance frames) and the search's predictor state."""

    state: SearchState | None = None
    tokens: list[np.ndarray] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)

    def emissions(self) -> StreamEmissions:
        if not self.tokens:
            return StreamEmissions(_EMPTY, _EMPTY)
        return StreamEmissions(np.concatenate(self.tokens), np.concatenate(self.frames))

    def fork(self) -> TransducerCollector:
        # The search never changes a state in place (it clones), so sharing it is safe.
        return TransducerCollector(self.state, list(self.tokens), list(self.frames))


# -- one stream ------------------------------------------------------------------------------------


@dataclass(eq=False)
class LongFormStream:
    """One utterance's long-form decoder state (see the module docstring)."""

    options: DecodeOptions
    n_layer: int
    conv_context: int
    head: CtcCollector | TransducerCollector
    keep_encoder_out: bool = False
    feats: torch.Tensor | None = None  # (T_buf, F) fbank frames from frame ``start`` on
    n_input: int = 0  # fbank frames pushed so far
    start: int = 0  # the next window's first fbank frame
    offset: int = 0  # encoder frames emitted before the next window
    att_cache: torch.Tensor | None = None  # (layers, l, h, 2dk)
    conv_cache: torch.Tensor | None = None  # (layers, L, D)
    frames_done: int = 0  # encoder frames committed (kept) so far
    done: bool = False  # the last window is decoded
    windows: list[WindowStats] = field(default_factory=list)
    enc_parts: list[torch.Tensor] = field(default_factory=list)

    @property
    def keep(self) -> int:
        return window_keep_frames(self.options)

    @property
    def full_window_frames(self) -> int:
        """Fbank frames a window that is not the last needs: kept frames, subsampling and right context."""
        return (
            self.keep * SUBSAMPLING
            + SUBSAMPLING
            - 1
            + right_context_frames(self.options, self.n_layer, self.conv_context)
        )

    def push(self, feats: torch.Tensor) -> None:
        """Append (T, F) normalised fbank frames."""
        if self.done:
            raise RuntimeError("the stream is finished")
        if feats.size(0) == 0:
            return
        self.feats = feats if self.feats is None else torch.cat([self.feats, feats])
        self.n_input += feats.size(0)

    def ready_plan(self) -> WindowPlan | None:
        """The next window if all its frames have arrived and it is not the last one."""
        if self.done or self.n_input < self.start + self.full_window_frames:
            return None
        stop = self.start + self.full_window_frames
        return WindowPlan(self.start, stop, False, self.offset)

    def final_plan(self) -> WindowPlan | None:
        """The next window as the batch decode of the frames pushed so far plans it (None: no more)."""
        if self.done:
            return None
        plans = plan_windows(
            self.n_input, self.options, self.n_layer, self.conv_context, start=self.start, offset=self.offset
        )
        return plans[0] if plans else None

    def fork(self) -> LongFormStream:
        """An independent copy (tensors are shared: nothing changes them in place)."""
        twin = copy.copy(self)
        twin.head = self.head.fork()
        twin.windows = list(self.windows)
        twin.enc_parts = list(self.enc_parts)
        return twin

    def result(self) -> LongFormResult:
        """What has been decoded so far, as :func:`endless_decode` returns it."""
        if isinstance(self.head, TransducerCollector):
            emissions = self.head.emissions()
            result = LongFormResult(frame_tokens=frame_path(emissions, self.frames_done), emissions=emissions)
        else:
            result = LongFormResult(frame_tokens=self.head.path())
            if self.head.keep_logprobs:
                result.logprobs = torch.cat(self.head.logprobs) if self.head.logprobs else None
        result.windows = list(self.windows)
        if self.keep_encoder_out and self.enc_parts:
            result.encoder_out = torch.cat(self.enc_parts)
        return result

    def _advance(self, plan: WindowPlan, produced: int, kept: int, n_chunks: int) -> None:
        self.windows.append(WindowStats(plan.n_frames, produced, n_chunks, kept, plan.offset + produced))
        self.frames_done += kept
        if plan.final:
            self.done = True
            self.feats = None
            self.att_cache = self.conv_cache = None
            return
        step = self.keep * SUBSAMPLING
        self.offset += min(produced, self.keep)
        self.start += step
        assert self.feats is not None
        self.feats = self.feats[step:].clone()  # a copy: the consumed frames are freed

    def _finish_empty(self) -> None:
        """No window is left (fewer frames than one encoder frame needs)."""
        self.done = True
        self.feats = None
        self.att_cache = self.conv_cache = None


def open_stream(
    model: ChunkFormer, options: DecodeOptions, *, keep_encoder_out: bool = False, keep_logprobs: bool = False
) -> LongFormStream:
    """A new, empty stream for ``model`` decoded with ``options``."""
    dims = model.dims
    head: CtcCollector | TransducerCollector = (
        TransducerCollector() if dims.is_transducer else CtcCollector(keep_logprobs)
    )
    return LongFormStream(options, dims.n_layer, dims.conv_context, head, keep_encoder_out)


# -- decoding --------------------------------------------------------------------------------------


def next_plan(stream: LongFormStream, finish: bool) -> WindowPlan | None:
    """The window ``stream`` can decode now: a ready one, or when finishing whatever is left."""
    plan = stream.ready_plan()
    if plan is None and finish:
        plan = stream.final_plan()
        if plan is None and not stream.done:
            stream._finish_empty()
    return plan


def decode_windows(model: ChunkFormer, jobs: Sequence[tuple[LongFormStream, WindowPlan]], policy: MemoryPolicy) -> None:
    """Decode one window of each stream (all with the same options) in one masked pass.

    One stream takes exactly the path of the batch decode (its caches, or none for an utterance
    of one window); several streams are encoded together, each from its own caches (zeros for a
    first window, which the masks make the same as none), and their heads run together.
    """
    if not jobs:
        return
    options = jobs[0][0].options
    if any(s.options != options for s, _ in jobs):
        raise ValueError("streams decoded together must share their decode options")
    dims = model.dims
    keep = window_keep_frames(options)
    with policy.inference():
        pieces = [(s.feats[p.start - s.start : p.stop - s.start], p.offset) for s, p in jobs]  # type: ignore[index]
        if len(jobs) == 1:
            stream, plan = jobs[0]
            att, conv = stream.att_cache, stream.conv_cache
            if att is None and not (plan.start == 0 and plan.final):
                # A first window with more to come: zero caches (the utterance's first window
                # sees none of them through the masks) so that one is returned for the next.
                device = pieces[0][0].device
                att = torch.zeros(dims.n_layer, options.left_context, dims.n_head, 2 * dims.head_dim, device=device)
                conv = torch.zeros(dims.n_layer, dims.conv_context, dims.n_state, device=device)
            outs, n_chunks, att, conv = _encode(model, pieces, options, att, conv, keep if att is not None else 0)
            stream.att_cache, stream.conv_cache = att, conv
        else:
            device = pieces[0][0].device
            atts = [
                _cache_or_zeros(
                    s.att_cache, (dims.n_layer, options.left_context, dims.n_head, 2 * dims.head_dim), device
                )
                for s, _ in jobs
            ]
            convs = [
                _cache_or_zeros(s.conv_cache, (dims.n_layer, dims.conv_context, dims.n_state), device) for s, _ in jobs
            ]
            outs, n_chunks, att_b, conv_b = _encode(
                model, pieces, options, torch.stack(atts), torch.stack(convs), keep, streams=True
            )
            assert att_b is not None and conv_b is not None
            for i, (s, _) in enumerate(jobs):
                s.att_cache, s.conv_cache = att_b[i], conv_b[i]
        kept = [out if p.final else out[:keep] for out, (_, p) in zip(outs, jobs, strict=True)]
        _run_heads(model, [s for s, _ in jobs], kept)
        for (s, p), out, k, n in zip(jobs, outs, kept, n_chunks, strict=True):
            if s.keep_encoder_out:
                s.enc_parts.append(k.float().cpu())
            s._advance(p, out.size(0), k.size(0), n)
        policy.window_done()


def _cache_or_zeros(cache: torch.Tensor | None, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.zeros(shape, device=device) if cache is None else cache


def _run_heads(model: ChunkFormer, streams: Sequence[LongFormStream], outs: Sequence[torch.Tensor]) -> None:
    """Each stream's head over its kept frames (T_i, D), all streams in one pass."""
    device = outs[0].device
    if model.dims.is_transducer:
        heads = [s.head for s in streams]
        assert all(isinstance(h, TransducerCollector) for h in heads)
        lengths = [o.size(0) for o in outs]
        if len(outs) == 1:
            enc = project_encoder(model, outs[0])[None]
            state = heads[0].state  # type: ignore[union-attr]
        else:
            enc = torch.nn.utils.rnn.pad_sequence([project_encoder(model, o) for o in outs], batch_first=True)
            states = [h.state or initial_state(model, 1, device) for h in heads]  # type: ignore[union-attr]
            state = SearchState(
                torch.cat([st.h for st in states], dim=1),
                torch.cat([st.c for st in states], dim=1),
                torch.cat([st.pred_proj for st in states]),
            )
        found, after = greedy_search(model, enc, torch.tensor(lengths, device=device), state)
        for i, (s, emissions) in enumerate(zip(streams, found, strict=True)):
            head = s.head
            assert isinstance(head, TransducerCollector)
            head.state = (
                after
                if len(outs) == 1
                else SearchState(after.h[:, i : i + 1], after.c[:, i : i + 1], after.pred_proj[i : i + 1])
            )
            head.tokens.append(emissions.tokens)
            head.frames.append(emissions.frames + s.frames_done)
        return
    assert model.ctc is not None
    frames = outs[0] if len(outs) == 1 else torch.cat(list(outs))  # (sum T_i, D)
    lengths = [o.size(0) for o in outs]
    if any(isinstance(s.head, CtcCollector) and s.head.keep_logprobs for s in streams):
        logp = model.ctc(frames)
        paths = logp.argmax(dim=-1).split(lengths)
        logps = logp.float().cpu().split(lengths)
    else:
        paths = model.ctc.greedy(frames).split(lengths)
        logps = None
    for i, s in enumerate(streams):
        head = s.head
        assert isinstance(head, CtcCollector)
        head.paths.append(paths[i])
        if head.keep_logprobs and logps is not None:
            head.logprobs.append(logps[i])


def advance(
    model: ChunkFormer,
    streams: Sequence[LongFormStream],
    policy: MemoryPolicy,
    *,
    finish: Sequence[bool] | None = None,
    progress: Callable[[], None] | None = None,
    one_round: bool = False,
) -> None:
    """Decode every window the streams have ready (finishing those flagged), in rounds of one
    masked batch with one window per stream, until none is left. With ``one_round`` streams
    not finishing get at most one window (the caller reports after each window)."""
    flags = finish if finish is not None else [False] * len(streams)
    rounds = 0
    while True:
        jobs = []
        for s, f in zip(streams, flags, strict=True):
            if one_round and rounds and not f:
                continue
            plan = next_plan(s, f)
            if plan is not None:
                jobs.append((s, plan))
        if not jobs:
            return
        decode_windows(model, jobs, policy)
        rounds += 1
        if progress is not None:
            progress()


def endless_decode(
    model: ChunkFormer,
    feats: torch.Tensor,
    options: DecodeOptions,
    policy: MemoryPolicy,
    *,
    keep_encoder_out: bool = False,
    keep_logprobs: bool = False,
    progress: Callable[[float], None] | None = None,
) -> LongFormResult:
    """Long-form decoding of one utterance's normalised fbank (T, F) on the policy's device.

    A stream fed the whole utterance and finished. The CTC head runs per window and only the
    argmax path stays on the device; encoder outputs and log-probs are copied to the host only
    when asked for (tests, diagnostics).
    """
    dims = model.dims
    stream = open_stream(model, options, keep_encoder_out=keep_encoder_out, keep_logprobs=keep_logprobs)
    stream.push(feats)
    n_windows = max(1, len(plan_windows(feats.size(0), options, dims.n_layer, dims.conv_context)))
    report = None
    if progress is not None:
        callback = progress

        def report() -> None:
            callback(len(stream.windows) / n_windows)

    advance(model, [stream], policy, finish=[True], progress=report)
    result = stream.result()
    if keep_encoder_out and result.encoder_out is None:
        result.encoder_out = torch.zeros(0, dims.n_state)
    if keep_logprobs and not dims.is_transducer and result.logprobs is None:
        result.logprobs = torch.zeros(0, dims.n_vocab)
    return result
