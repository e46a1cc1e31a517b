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
  after it are discarded. So one iteration = one emission, or k frames of blank. On CPU the
  window adapts (:class:`SearchTuning`): small after an emission, doubled after each all-blank
  window, so pauses cost few calls and speech wastes few rows.
- All streams of a batch advance together: each iteration handles every active stream's next
  emission (or blank run) in one batched joint evaluation; finished streams drop out.
- The predictor runs only where the iteration emitted: on CPU on the emitting rows alone; on an
  accelerator for all rows with the results kept by a mask (selecting rows would need the
  device to tell the host which rows, a synchronisation; an LSTM step over B rows costs the
  same as over fewer there). The update is chosen once, before the loop.

On an accelerator the loop never waits for the device per frame or per step: there is no
data-dependent Python branch inside an iteration (positions, masks and counters are tensors),
emitted tokens go into a device-side record, and the host asks whether any stream is still
active only every ``check_every`` iterations (one synchronisation per 32 iterations, each of
which consumes up to 32 frames or one emission); the iterations after the last stream
finished are no-ops. The search runs in float32 outside autocast: its decisions must be the
reference's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@dataclass(frozen=True)
class SearchTuning:
    """How the search spends its calls on a device; never what it decides.

    Each iteration evaluates ``window`` frames per stream in one joint call. Right after an
    emission the window is ``lookahead`` frames (the next emission is likely near); each window
    in which no stream emitted doubles the next, up to ``max_lookahead`` (long blank runs, as in
    pauses, cost few calls). The host checks for finished streams every ``check_every``
    iterations. ``masked_updates``: the predictor steps every row and a mask keeps the emitting
    rows' results (no host synchronisation, for accelerators) instead of stepping the emitting
    rows alone (cheaper where the host knows the rows for free, on CPU). ``cpu_threads``: torch's
    CPU threads during the search (None: unchanged). Its operations are small (a few rows), so
    sharing each between threads saves little and, on a busy machine, every operation waits for
    the slowest thread to be scheduled: measured 15x slower with 2 threads than with 1 on a
    loaded 2-core machine (docs/benchmarks.md). The setting is process-wide while it lasts.
    """

    lookahead: int
    max_lookahead: int
    check_every: int
    masked_updates: bool
    cpu_threads: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.lookahead <= self.max_lookahead or self.check_every < 1:
            raise ValueError("need 1 <= lookahead <= max_lookahead and check_every >= 1")

    @property
    def adaptive(self) -> bool:
        return self.max_lookahead > self.lookahead


# On CPU a decision costs the host nothing, so the window adapts and only emitting rows step.
# On an accelerator every host decision is a synchronisation: a fixed window, masked updates,
# and a check for finished streams every 32 iterations.
CPU_TUNING = SearchTuning(lookahead=4, max_lookahead=32, check_every=1, masked_updates=False, cpu_threads=1)
ACCELERATOR_TUNING = SearchTuning(lookahead=32, max_lookahead=32, check_every=32, masked_updates=True)


def tuning_for(device: torch.device) -> SearchTuning:
    return CPU_TUNING if device.type == "cpu" else ACCELERATOR_TUNING


PredictorUpdate = Callable[[torch.Tensor, torch.Tensor], None]


def greedy_search(
    model: ChunkFormer,
    enc_proj: torch.Tensor,
    lengths: torch.Tensor,
    state: SearchState | None = None,
    *,
    n_steps: int = N_STEPS,
    tuning: SearchTuning | None = None,
    trace: list[SearchStep] | None = None,
) -> tuple[list[StreamEmissions], SearchState]:
    """Greedy search over B streams of projected encoder frames.

    enc_proj (B, T, J) from :func:`project_encoder` (padded), lengths (B,) int64 valid frames
    per stream, ``state`` from a previous call on the preceding frames of the same streams
    (long form: the state is carried across windows, never reset) or None for the start.
    Returns each stream's emissions (frames relative to this call's first frame) and the state
    after the last frame. ``tuning`` (default: :func:`tuning_for` the device) changes only the
    speed. ``trace`` (one stream only, slow) receives every joint evaluation the reference
    makes, in its order.
    """
    predictor, joint = model.predictor, model.joint
    assert predictor is not None and joint is not None, "a transducer model"
    if n_steps < 1:
        raise ValueError("n_steps must be at least 1")
    b, n_frames, _ = enc_proj.shape
    device = enc_proj.device
    tuning = tuning or tuning_for(device)
    if trace is not None and b != 1:
        raise ValueError("trace needs a single stream")
    if state is None:
        state = initial_state(model, b, device)
    h, c, pred_proj = state.h.clone(), state.c.clone(), state.pred_proj.clone()
    lengths = lengths.to(device=device, dtype=torch.long)
    if n_frames == 0:
        empty = np.zeros(0, dtype=np.int64)
        return [StreamEmissions(empty, empty) for _ in range(b)], SearchState(h, c, pred_proj)

    def step_emitting_rows(emit: torch.Tensor, token: torch.Tensor) -> None:
        rows = emit.nonzero().squeeze(1)
        if rows.numel():
            out, (h_new, c_new) = predictor.step(token[rows], (h[:, rows], c[:, rows]))
            h[:, rows] = h_new
            c[:, rows] = c_new
            pred_proj[rows] = joint.project_predictor(out)

    def step_all_rows_masked(emit: torch.Tensor, token: torch.Tensor) -> None:
        out, (h_new, c_new) = predictor.step(token, (h, c))
        keep = emit[None, :, None]
        h.copy_(torch.where(keep, h_new, h))
        c.copy_(torch.where(keep, c_new, c))
        pred_proj.copy_(torch.where(emit[:, None], joint.project_predictor(out), pred_proj))

    update_predictor: PredictorUpdate = step_all_rows_masked if tuning.masked_updates else step_emitting_rows
    frame = torch.zeros(b, dtype=torch.long, device=device)  # each stream's current frame
    emitted_here = torch.zeros(b, dtype=torch.long, device=device)  # emissions so far at that frame
    all_offsets = torch.arange(tuning.max_lookahead, device=device)
    stream_rows = torch.arange(b, device=device)[:, None]  # (B, 1)
    rec_tokens: list[torch.Tensor] = []
    rec_frames: list[torch.Tensor] = []
    window = tuning.lookahead
    # Each iteration emits one token or moves at least one frame on: a hard bound.
    max_iterations = n_frames * (n_steps + 1) + 1
    with torch.autocast(device.type, enabled=False), _cpu_threads(tuning.cpu_threads):
        for iteration in range(max_iterations):
            if iteration % tuning.check_every == 0 and not bool((frame < lengths).any()):
                break
            offsets = all_offsets[:window]  # (k,)
            idx = frame[:, None] + offsets  # (B, k) frames of the look-ahead window
            valid = idx < lengths[:, None]
            scores = joint.combine(enc_proj[stream_rows, idx.clamp(max=n_frames - 1)], pred_proj[:, None, :])
            decision = scores.argmax(dim=-1)  # (B, k), ties -> lowest id
            hit = (decision != BLANK_ID) & valid
            # Position of each stream's first emission in the window, or the window size.
            first_emission = torch.where(hit, offsets, window).amin(dim=1)  # (B,)
            emit = first_emission < window
            if trace is not None:
                _trace(
                    trace,
                    scores[0],
                    int(frame.item()),
                    int(emitted_here.item()),
                    int(first_emission.item()),
                    int(valid.sum().item()),
                )
            token = decision.gather(1, first_emission.clamp(max=window - 1)[:, None]).squeeze(1)  # (B,)
            # Emitting: move to the emitting frame; all blank: past the window's valid frames.
            frame = frame + torch.where(emit, first_emission, valid.sum(dim=1))
            emitted_here = torch.where(emit & (first_emission == 0), emitted_here, 0) + emit.long()
            rec_tokens.append(torch.where(emit, token, -1))
            rec_frames.append(frame)
            capped = emitted_here >= n_steps  # the 64th emission ends the frame without a blank
            frame = frame + capped.long()
            emitted_here = torch.where(capped, 0, emitted_here)
            update_predictor(emit, token)
            if tuning.adaptive:
                window = tuning.lookahead if bool(emit.any()) else min(2 * window, tuning.max_lookahead)
    tokens = torch.stack(rec_tokens, dim=1).cpu().numpy()  # (B, iterations), -1 = none
    frames = torch.stack(rec_frames, dim=1).cpu().numpy()
    results = []
    for i in range(b):
        mask = tokens[i] >= 0
        results.append(StreamEmissions(tokens[i][mask].astype(np.int64), frames[i][mask].astype(np.int64)))
    return results, SearchState(h, c, pred_proj)


@contextmanager
def _cpu_threads(n: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
