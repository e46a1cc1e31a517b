"""The diarization stages around clustering, as pure numpy functions: where the embedding windows
lie in each speech region, and, once the windows are clustered, frame-level resegmentation, the
smoothing of short runs, and speaker turns. ``pipeline.py`` calls them stage by stage; the unit
tests drive them with synthetic embeddings.

Times are seconds; a frame is ``FRAME_S`` (10 ms, the mel hop); a region is ``(start, end)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from omoai_asr.diarization.features import HOP, SAMPLE_RATE

FRAME_S = HOP / SAMPLE_RATE  # 10 ms

Region = tuple[float, float]
#: (speaker id, start s, end s)
Turn = tuple[int, float, float]


@dataclass(frozen=True)
class Windows:
    """The embedding windows of a recording, in region order."""

    region: np.ndarray  # (n,) index of the speech region each window lies in
    start: np.ndarray  # (n,) seconds
    end: np.ndarray  # (n,) seconds
    embeddings: np.ndarray  # (n, d) unit length


def window_offsets(frames: int, window: int, step: int) -> tuple[list[int], int]:
    """Where the windows of a region of ``frames`` frames start, and their common length in frames:
    every ``step`` frames a ``window``-frame window, the last one flush with the region's end; a
    region no longer than one window is one window of its own length."""
    if frames <= window:
        return [0], frames
    offsets = list(range(0, frames - window + 1, step))
    if offsets[-1] + window < frames:
        offsets.append(frames - window)  # the region's tail
    return offsets, window


def resegment(
    windows: Windows, labels: np.ndarray, centroids: np.ndarray, regions: Sequence[Region], min_run_s: float
) -> list[np.ndarray]:
    """Per region, the speaker id of each of its frames: every frame scores each speaker by the
    similarity of the windows covering it to that speaker's centroid, weighted towards each
    window's centre; runs shorter than ``min_run_s`` then go to a neighbour (:func:`smooth_runs`).

    ``labels``: (n,) cluster id of each window; ``centroids``: (k, d) unit length."""
    sims = windows.embeddings @ centroids.T.astype(np.float32)  # (n, k)
    k = centroids.shape[0]
    min_run = max(1, round(min_run_s / FRAME_S))
    out = []
    for r, (s, e) in enumerate(regions):
        n = max(1, round((e - s) / FRAME_S))
        t = s + (np.arange(n) + 0.5) * FRAME_S  # (n,) frame centres
        scores = np.zeros((n, k), dtype=np.float64)
        weight = np.zeros(n)
        inside = np.flatnonzero(windows.region == r)
        for i in inside:
            half = (windows.end[i] - windows.start[i]) / 2
            centre = windows.start[i] + half
            # Triangular weight over the window, never zero inside it.
            tri = np.clip(1.0 - np.abs(t - centre) / (half + FRAME_S), 0.0, None)
            tri[(t < windows.start[i]) | (t > windows.end[i])] = 0.0
            scores += tri[:, None] * sims[i][None, :]
            weight += tri
        ids = np.argmax(scores, axis=1)
        uncovered = weight == 0
        if uncovered.any() and len(inside):  # cannot happen with windows spanning each region; be safe
            ids[uncovered] = labels[inside[0]]
        out.append(smooth_runs(ids, scores, min_run))
    return out


def smooth_runs(ids: np.ndarray, scores: np.ndarray, min_run: int) -> np.ndarray:
    """Runs shorter than ``min_run`` frames take the neighbouring speaker that scores them higher,
    the shortest run first. ``ids``: (n,) speaker per frame; ``scores``: (n, k)."""
    ids = ids.copy()
    for _ in range(len(ids)):  # bounded: every pass removes one run
        change = np.flatnonzero(np.diff(ids)) + 1
        bounds = [0, *change.tolist(), len(ids)]
        runs = list(itertools.pairwise(bounds))
        if len(runs) <= 1:
            break
        short = [(b - a, a, b) for a, b in runs if b - a < min_run]
        if not short:
            break
        _, a, b = min(short)
        left = ids[a - 1] if a > 0 else None
        right = ids[b] if b < len(ids) else None
        options = [x for x in (left, right) if x is not None]
        best = max(options, key=lambda c: scores[a:b, c].sum())
        ids[a:b] = best
    return ids


def turns(frames: Sequence[np.ndarray], regions: Sequence[Region], merge_gap_s: float) -> list[Turn]:
    """Speaker turns from each region's frame ids: a turn per run of one speaker, the last ending
    exactly at its region's end; a speaker's turns closer than ``merge_gap_s`` are joined."""
    out: list[Turn] = []
    for ids, (s, e) in zip(frames, regions, strict=True):
        change = np.flatnonzero(np.diff(ids)) + 1
        bounds = [0, *change.tolist(), len(ids)]
        for a, b in itertools.pairwise(bounds):
            start = s + a * FRAME_S
            end = e if b == len(ids) else s + b * FRAME_S
            spk = int(ids[a])
            if out and out[-1][0] == spk and start - out[-1][2] <= merge_gap_s:
                out[-1] = (spk, out[-1][1], end)
            else:
                out.append((spk, start, end))
    return out
