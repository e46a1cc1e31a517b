"""The default diarization backend: voice activity -> speaker embeddings over short sliding windows
inside speech -> clustering -> frame-level resegmentation -> speaker turns.

- VAD: Silero v6 (``vad.py``); windows never cross a pause, so a pause between two speakers is an
  exact turn boundary.
- Embeddings: GE2E (``encoder.py``) over ``window_s`` windows every ``step_s`` seconds; a speech
  region shorter than a window gets one window of its own length. Windows shorter than
  ``min_cluster_window_s`` do not take part in clustering (too little voice to trust) and are
  assigned to the nearest speaker afterwards.
- Resegmentation: every 10 ms frame of speech scores each speaker by the similarity of the windows
  covering it (weighted towards each window's centre); runs shorter than ``min_run_s`` inside a
  region go to a neighbour; same-speaker turns closer than ``merge_gap_s`` are joined.
- Speakers are labelled ``S1``, ``S2``... in order of first appearance, or by the names of the
  reference voices they match (``DiarizationOptions.references``).
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omoai_gpu.memory import MemoryPolicy

from omoai_asr.diarization import assets
from omoai_asr.diarization.clustering import ClusteringOptions, SpeakerCount, centroids, cluster
from omoai_asr.diarization.encoder import SpeakerEncoder
from omoai_asr.diarization.features import HOP, SAMPLE_RATE, mel_spectrogram, normalise_volume
from omoai_asr.diarization.types import Diarization, DiarizationOptions, labelled
from omoai_asr.diarization.vad import SileroVad, VadOptions, speech_regions

log = logging.getLogger(__name__)

FRAME_S = HOP / SAMPLE_RATE  # 10 ms


@dataclass(frozen=True)
class PipelineConfig:
    window_s: float = 1.5
    step_s: float = 0.75
    min_cluster_window_s: float = 1.0
    min_run_s: float = 0.5
    merge_gap_s: float = 0.3
    reference_similarity: float = 0.7  # a cluster takes a reference's name at least this similar
    max_cluster_windows: int = 3000  # longer recordings cluster an even subsample, then assign all
    batch_windows: int = 512  # windows per LSTM call: the 150 sequential steps are amortised over the batch
    vad: VadOptions = field(default_factory=VadOptions)
    clustering: ClusteringOptions = field(default_factory=ClusteringOptions)


@dataclass
class _Windows:
    region: np.ndarray  # (n,) index of the speech region each window lies in
    start: np.ndarray  # (n,) seconds
    end: np.ndarray  # (n,) seconds
    embeddings: np.ndarray  # (n, 256)


class EmbeddingDiarizer:
    """Silero VAD + GE2E embeddings + spectral clustering; weights from the wheels (``assets``)."""

    name = "omoai"

    def __init__(
        self, encoder: SpeakerEncoder, vad: SileroVad, policy: MemoryPolicy, config: PipelineConfig = PipelineConfig()
    ) -> None:
        self.encoder = encoder
        self.vad = vad
        self.policy = policy
        self.config = config

    @classmethod
    def load(
        cls,
        policy: MemoryPolicy,
        *,
        encoder_path: Path | None = None,
        vad_path: Path | None = None,
        config: PipelineConfig = PipelineConfig(),
    ) -> EmbeddingDiarizer:
        encoder = SpeakerEncoder.load(assets.locate(assets.SPEAKER_ENCODER, encoder_path), policy.device)
        vad = SileroVad(assets.locate(assets.SILERO_VAD, vad_path))
        return cls(encoder, vad, policy, config)

    # -- the pipeline ------------------------------------------------------------------------------

    def diarize(self, samples: np.ndarray, options: DiarizationOptions) -> Diarization:
        wav = normalise_volume(samples)
        duration = len(wav) / SAMPLE_RATE
        regions = speech_regions(self.vad.probabilities(wav), duration, self.config.vad)
        if not regions:
            return Diarization((), (), duration, self.name)
        windows = self._windows(wav, regions)
        count = SpeakerCount(options.num_speakers, options.min_speakers, options.max_speakers)
        labels, k = self._cluster(windows, count)
        cents = centroids(windows.embeddings, labels, k)
        frames = self._resegment(windows, labels, cents, regions)
        turns = self._turns(frames, regions)
        names = self._names(cents, options)
        return labelled(turns, names, duration, self.name)

    def embed(self, samples: np.ndarray) -> np.ndarray:
        """One unit-length voice embedding of a clip (the mean of its windows), (256,)."""
        wav = normalise_volume(samples)
        duration = len(wav) / SAMPLE_RATE
        regions = speech_regions(self.vad.probabilities(wav), duration, self.config.vad) or [(0.0, duration)]
        e = self._windows(wav, regions).embeddings.mean(axis=0)
        return e / max(float(np.linalg.norm(e)), 1e-12)

    # -- steps -------------------------------------------------------------------------------------

    def _windows(self, wav: np.ndarray, regions: list[tuple[float, float]]) -> _Windows:
        cfg = self.config
        win = round(cfg.window_s / FRAME_S)
        step = round(cfg.step_s / FRAME_S)
        region_ids, starts, lengths, mels = [], [], [], []
        for r, (s, e) in enumerate(regions):
            lo, hi = int(s * SAMPLE_RATE), math.ceil(e * SAMPLE_RATE)
            mel = mel_spectrogram(torch.from_numpy(wav[lo:hi]))  # (frames, 40)
            n = len(mel)
            if n <= win:
                offsets = [0]
                size = n
            else:
                offsets = list(range(0, n - win + 1, step))
                if offsets[-1] + win < n:
                    offsets.append(n - win)  # the region's tail
                size = win
            for o in offsets:
                region_ids.append(r)
                starts.append(s + o * FRAME_S)
                lengths.append(size * FRAME_S)
                mels.append(mel[o : o + size])
        embeddings = self._embed_mels(mels)
        start = np.asarray(starts)
        return _Windows(np.asarray(region_ids), start, start + np.asarray(lengths), embeddings)

    def _embed_mels(self, mels: list[torch.Tensor]) -> np.ndarray:
        """Windows (frames_i, 40) -> (n, 256); batched by equal length (almost all are ``window_s``)."""
        out = np.zeros((len(mels), self.encoder.dims.embedding), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for i, m in enumerate(mels):
            by_length.setdefault(len(m), []).append(i)
        device = self.policy.device
        with self.policy.inference():
            for idx in by_length.values():
                for b in range(0, len(idx), self.config.batch_windows):
                    chunk = idx[b : b + self.config.batch_windows]
                    batch = torch.stack([mels[i] for i in chunk]).to(device)  # (B, frames, 40)
                    out[chunk] = self.encoder(batch).float().cpu().numpy()
                self.policy.window_done()
        return out

    def _cluster(self, w: _Windows, count: SpeakerCount) -> tuple[np.ndarray, int]:
        cfg = self.config
        usable = np.flatnonzero(w.end - w.start >= cfg.min_cluster_window_s - 1e-6)
        if len(usable) == 0:
            usable = np.arange(len(w.start))
        if len(usable) > cfg.max_cluster_windows:
            usable = usable[np.linspace(0, len(usable) - 1, cfg.max_cluster_windows).round().astype(int)]
        sub = cluster(w.embeddings[usable], count, cfg.clustering)
        k = int(sub.max()) + 1
        cents = centroids(w.embeddings[usable].astype(np.float64), sub, k)
        labels = np.argmax(w.embeddings @ cents.T, axis=1)
        labels[usable] = sub
        return labels, k

    def _resegment(
        self, w: _Windows, labels: np.ndarray, cents: np.ndarray, regions: list[tuple[float, float]]
    ) -> list[np.ndarray]:
        """Per region, the speaker id of each of its 10 ms frames."""
        sims = w.embeddings @ cents.T.astype(np.float32)  # (n, k)
        k = cents.shape[0]
        min_run = max(1, round(self.config.min_run_s / FRAME_S))
        out = []
        for r, (s, e) in enumerate(regions):
            n = max(1, round((e - s) / FRAME_S))
            t = s + (np.arange(n) + 0.5) * FRAME_S
            scores = np.zeros((n, k), dtype=np.float64)
            weight = np.zeros(n)
            for i in np.flatnonzero(w.region == r):
                half = (w.end[i] - w.start[i]) / 2
                centre = w.start[i] + half
                # Triangular weight over the window, never zero inside it.
                tri = np.clip(1.0 - np.abs(t - centre) / (half + FRAME_S), 0.0, None)
                tri[(t < w.start[i]) | (t > w.end[i])] = 0.0
                scores += tri[:, None] * sims[i][None, :]
                weight += tri
            ids = np.argmax(scores, axis=1)
            uncovered = weight == 0
            if uncovered.any():  # cannot happen with windows spanning each region; be safe
                ids[uncovered] = labels[np.flatnonzero(w.region == r)[0]]
            out.append(_smooth_runs(ids, scores, min_run))
        return out

    def _turns(self, frames: list[np.ndarray], regions: list[tuple[float, float]]) -> list[tuple[int, float, float]]:
        turns: list[tuple[int, float, float]] = []
        for ids, (s, e) in zip(frames, regions, strict=True):
            change = np.flatnonzero(np.diff(ids)) + 1
            bounds = [0, *change.tolist(), len(ids)]
            for a, b in itertools.pairwise(bounds):
                start = s + a * FRAME_S
                end = e if b == len(ids) else s + b * FRAME_S
                spk = int(ids[a])
                if turns and turns[-1][0] == spk and start - turns[-1][2] <= self.config.merge_gap_s:
                    turns[-1] = (spk, turns[-1][1], end)
                else:
                    turns.append((spk, start, end))
        return turns

    def _names(self, cents: np.ndarray, options: DiarizationOptions) -> dict[int, str]:
        """Clusters matched to reference voices (greedy, most similar pair first)."""
        if not options.references:
            return {}
        refs = {name: self.embed(clip) for name, clip in options.references.items()}
        pairs = sorted(
            ((float(cents[c] @ e), c, name) for name, e in refs.items() for c in range(len(cents))), reverse=True
        )
        names: dict[int, str] = {}
        for sim, c, name in pairs:
            if sim < self.config.reference_similarity:
                break
            if c not in names and name not in names.values():
                names[c] = name
        return names


def _smooth_runs(ids: np.ndarray, scores: np.ndarray, min_run: int) -> np.ndarray:
    """Runs shorter than ``min_run`` frames take the neighbouring speaker that scores them higher."""
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
