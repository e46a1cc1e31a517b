"""Greedy transducer (RNN-T) search with the reference's semantics, batched over streams.

The reference (``optimized_search`` of chunkformer 1.2.2, ``n_steps`` = 64) walks the encoder
frames one by one: at frame t it evaluates ``joint(enc[t], predictor(last token, state))`` up
to 64 times; a non-blank argmax is emitted and fed to the predictor (its LSTM state advances
only on non-blank) and the search stays on frame t; blank (id 0, hard-coded) ends the frame;
after the 64th emission the frame ends without a blank. The first predictor input is blank.
Ties go to the lowest id (``argmax``).

This module computes exactly those decisions, but never evaluates what it does not need:

- ``enc_ffn`` of every encoder frame is computed once, in one GEMM (``project_encoder``), and
  ``pred_ffn`` once per emitted token, not per step: a step costs one activation and the
  output layer.
- **Blank look-ahead.** The predictor state only changes on emission, so the decisions of the
  next ``k`` steps until the first emission are ``argmax(joint(enc[t + i], p))`` with the *same*
  predictor output ``p``: one (k, J) x (J, V) GEMM instead of k matrix-vector products (the
  output layer's weights, 14 MB for large-vie, are read once). The first non-blank position j
  is the next emission; positions before it are blanks the reference would also take (same
  inputs, same arithmetic up to GEMM rounding, far below the decisions' margins), positions
  after it are discarded. So one iteration = one emission, or k frames of blank.
- All streams of a batch advance together: each iteration handles every active stream's next
  emission (or blank run) in one batched joint evaluation; finished streams drop out.
- The predictor runs only where the iteration emitted: on CPU on the emitting rows alone; on an
  accelerator for all rows with the results kept by a mask (selecting rows would need the
  device to tell the host which rows, a synchronisation; an LSTM step over B rows costs the
  same as over fewer there).

On an accelerator the loop never waits for the device per frame or per step: there is no
data-dependent Python branch inside an iteration (positions, masks and counters are tensors),
emitted tokens go into a device-side record, and the host asks whether any stream is still
active only every ``check_every`` iterations (one synchronisation per 32 iterations, each of
which consumes up to ``k`` = 32 frames or one emission); the iterations after the last stream
finished are no-ops. The search runs in float32 outside autocast: its decisions must be the
reference's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from omoai_asr.engine.model import ChunkFormer

N_STEPS = 64  # the reference's cap on emissions per encoder frame
BLANK_ID = 0  # hard-coded for transducers in the reference (not ctc_conf.ctc_blank_id)


@dataclass
class SearchState:
    """The predictor side of the search for B streams, carried across long-form windows."""

    h: torch.Tensor  # (num_layers, B, hidden)
    c: torch.Tensor  # (num_layers, B, hidden)
    pred_proj: torch.Tensor  # (B, J): joint-projected predictor output for the current history


@dataclass
class StreamEmissions:
    """What one stream emitted: token ids in order and the encoder frame of each."""

    tokens: np.ndarray  # (K,) int64
    frames: np.ndarray  # (K,) int64, non-decreasing


@dataclass(frozen=True)
class SearchStep:
    """One joint evaluation the reference would make (debugging: ``trace``)."""

    frame: int
    step: int  # 1-based step within the frame
    logprobs: np.ndarray  # (V,) log_softmax of the joint


def initial_state(model: ChunkFormer, batch: int, device: torch.device) -> SearchState:
    """Zero LSTM state and the predictor's output for the start symbol (blank)."""
    assert model.predictor is not None and model.joint is not None, "a transducer model"
    with torch.autocast(device.type, enabled=False):
        h, c = model.predictor.initial_state(batch, device)
        start = torch.full((batch,), BLANK_ID, dtype=torch.long, device=device)
        # The state after consuming the start symbol: the reference keeps (zeros, blank) as
        # (state, input) and recomputes the same step until the first emission, then stores
        # exactly this state with the emitted token as the next input.
        out, (h, c) = model.predictor.step(start, (h, c))
        return SearchState(h, c, model.joint.project_predictor(out))


def project_encoder(model: ChunkFormer, enc: torch.Tensor) -> torch.Tensor:
    """(..., D) encoder output -> (..., J) float32: the joint's encoder projection, once."""
    assert model.joint is not None
    with torch.autocast(enc.device.type, enabled=False):
        return model.joint.project_encoder(enc.float())


def greedy_search(
    model: ChunkFormer,
    enc_proj: torch.Tensor,
    lengths: torch.Tensor,
    state: SearchState | None = None,
    *,
    n_steps: int = N_STEPS,
    lookahead: int | None = None,
    check_every: int | None = None,
    trace: list[SearchStep] | None = None,
) -> tuple[list[StreamEmissions], SearchState]:
    """Greedy search over B streams of projected encoder frames.

    enc_proj (B, T, J) from :func:`project_encoder` (padded), lengths (B,) int64 valid frames
    per stream, ``state`` from a previous call on the preceding frames of the same streams
    (long form: the state is carried across windows, never reset) or None for the start.
    Returns each stream's emissions (frames relative to this call's first frame) and the state
    after the last frame. ``trace`` (one stream only, slow) receives every joint evaluation the
    reference makes, in its order.
    """
    predictor, joint = model.predictor, model.joint
    assert predictor is not None and joint is not None, "a transducer model"
    if n_steps < 1:
        raise ValueError("n_steps must be at least 1")
    b, n_frames, _ = enc_proj.shape
    device = enc_proj.device
    on_cpu = device.type == "cpu"
    k = lookahead if lookahead is not None else (4 if on_cpu else 32)
    check = check_every if check_every is not None else (1 if on_cpu else 32)
    if trace is not None and b != 1:
        raise ValueError("trace needs a single stream")
    if state is None:
        state = initial_state(model, b, device)
    h, c, pred_proj = state.h.clone(), state.c.clone(), state.pred_proj.clone()
    lengths = lengths.to(device=device, dtype=torch.long)
    if n_frames == 0:
        empty = np.zeros(0, dtype=np.int64)
        return [StreamEmissions(empty, empty) for _ in range(b)], SearchState(h, c, pred_proj)

    t = torch.zeros(b, dtype=torch.long, device=device)  # current frame of each stream
    count = torch.zeros(b, dtype=torch.long, device=device)  # emissions so far at frame t
    offsets = torch.arange(k, device=device)  # (k,)
    rows = torch.arange(b, device=device)[:, None]  # (B, 1)
    no_hit = torch.full((), k, dtype=torch.long, device=device)
    rec_tokens: list[torch.Tensor] = []
    rec_frames: list[torch.Tensor] = []
    # Each iteration emits one token or moves at least one frame on: a hard bound.
    max_iterations = n_frames * (n_steps + 1) + 1
    with torch.autocast(device.type, enabled=False):
        for iteration in range(max_iterations):
            if iteration % check == 0 and not bool((t < lengths).any()):
                break
            idx = t[:, None] + offsets  # (B, k) frames of the look-ahead window
            valid = idx < lengths[:, None]
            window = enc_proj[rows, idx.clamp(max=n_frames - 1)]  # (B, k, J)
            scores = joint.combine(window, pred_proj[:, None, :])  # (B, k, V)
            decision = scores.argmax(dim=-1)  # (B, k), ties -> lowest id
            hit = (decision != BLANK_ID) & valid
            first = torch.where(hit, offsets, no_hit).amin(dim=1)  # (B,) first emission or k
            emit = first < k
            if trace is not None:
                _trace(trace, scores[0], int(t.item()), int(count.item()), int(first.item()), int(valid.sum().item()))
            step_to = torch.where(emit, first, valid.sum(dim=1))  # frames passed (all blank)
            token = decision.gather(1, first.clamp(max=k - 1)[:, None]).squeeze(1)  # (B,)
            t = t + step_to
            same_frame = emit & (first == 0)
            count = torch.where(same_frame, count, 0) + emit.long()
            rec_tokens.append(torch.where(emit, token, -1))
            rec_frames.append(t)
            capped = count >= n_steps  # the 64th emission ends the frame without a blank
            t = t + capped.long()
            count = torch.where(capped, 0, count)
            if on_cpu:
                emitting = emit.nonzero().squeeze(1)
                if emitting.numel():
                    out, (h_new, c_new) = predictor.step(token[emitting], (h[:, emitting], c[:, emitting]))
                    h[:, emitting] = h_new
                    c[:, emitting] = c_new
                    pred_proj[emitting] = joint.project_predictor(out)
            else:
                out, (h_new, c_new) = predictor.step(token, (h, c))
                keep = emit[None, :, None]
                h = torch.where(keep, h_new, h)
                c = torch.where(keep, c_new, c)
                pred_proj = torch.where(emit[:, None], joint.project_predictor(out), pred_proj)
    tokens = torch.stack(rec_tokens, dim=1).cpu().numpy()  # (B, iterations), -1 = none
    frames = torch.stack(rec_frames, dim=1).cpu().numpy()
    results = []
    for i in range(b):
        mask = tokens[i] >= 0
        results.append(StreamEmissions(tokens[i][mask].astype(np.int64), frames[i][mask].astype(np.int64)))
    return results, SearchState(h, c, pred_proj)


def _trace(trace: list[SearchStep], scores: torch.Tensor, t: int, count: int, first: int, n_valid: int) -> None:
    """Append the joint evaluations of one iteration that the reference also makes."""
    last = first if first < scores.size(0) else n_valid - 1
    logprobs = F.log_softmax(scores.float(), dim=-1).cpu().numpy()
    for pos in range(last + 1):
        trace.append(SearchStep(t + pos, count + 1 if pos == 0 else 1, logprobs[pos]))


def frame_path(emissions: StreamEmissions, n_frames: int) -> np.ndarray:
    """(T,) the first step's argmax at every frame: its first emission, or blank."""
    path = np.zeros(n_frames, dtype=np.int64)
    if emissions.tokens.size:
        first = np.concatenate(([True], emissions.frames[1:] != emissions.frames[:-1]))
        path[emissions.frames[first]] = emissions.tokens[first]
    return path


def per_frame(emissions: StreamEmissions, n_frames: int) -> list[list[int]]:
    """Emissions as one list per frame (the reference's output grid without padding)."""
    out: list[list[int]] = [[] for _ in range(n_frames)]
    for token, frame in zip(emissions.tokens.tolist(), emissions.frames.tolist(), strict=True):
        out[frame].append(token)
    return out
