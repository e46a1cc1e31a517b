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

The window placement, resegmentation and turns are pure functions in ``resegmentation.py``; the
tuning is ``PipelineConfig`` (``config.py``, from the ``OMOAI_DIARIZATION_*`` settings).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
from omoai_gpu.memory import MemoryPolicy

from omoai_asr.diarization import assets
from omoai_asr.diarization.clustering import centroids, cluster
from omoai_asr.diarization.config import DEFAULTS, PipelineConfig
from omoai_asr.diarization.encoder import SpeakerEncoder
from omoai_asr.diarization.features import SAMPLE_RATE, mel_spectrogram, normalise_volume
from omoai_asr.diarization.resegmentation import FRAME_S, Region, Windows, resegment, turns, window_offsets
from omoai_asr.diarization.types import Diarization, DiarizationOptions, labelled
from omoai_asr.diarization.vad import SileroVad, speech_regions

log = logging.getLogger(__name__)

__all__ = ["EmbeddingDiarizer", "PipelineConfig"]


class EmbeddingDiarizer:
    """Silero VAD + GE2E embeddings + spectral clustering; weights from the wheels (``assets``)."""

    name = "omoai"

    def __init__(
        self, encoder: SpeakerEncoder, vad: SileroVad, policy: MemoryPolicy, config: PipelineConfig = DEFAULTS
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
        config: PipelineConfig = DEFAULTS,
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
        labels, k = self._cluster(windows, options)
        cents = centroids(windows.embeddings, labels, k)
        frames = resegment(windows, labels, cents, regions, self.config.min_run_s)
        found = turns(frames, regions, self.config.merge_gap_s)
        names = self._names(cents, options)
        return labelled(found, names, duration, self.name)

    def embed(self, samples: np.ndarray) -> np.ndarray:
        """One unit-length voice embedding of a clip (the mean of its windows), (256,)."""
        wav = normalise_volume(samples)
        duration = len(wav) / SAMPLE_RATE
        regions = speech_regions(self.vad.probabilities(wav), duration, self.config.vad) or [(0.0, duration)]
        e = self._windows(wav, regions).embeddings.mean(axis=0)
        return e / max(float(np.linalg.norm(e)), 1e-12)

    # -- steps -------------------------------------------------------------------------------------

    def _windows(self, wav: np.ndarray, regions: list[Region]) -> Windows:
        """The embedding windows inside the speech regions (:func:`window_offsets`), embedded."""
        win = round(self.config.window_s / FRAME_S)
        step = round(self.config.step_s / FRAME_S)
        region_ids, starts, lengths, mels = [], [], [], []
        for r, (s, e) in enumerate(regions):
            lo, hi = int(s * SAMPLE_RATE), math.ceil(e * SAMPLE_RATE)
            mel = mel_spectrogram(torch.from_numpy(wav[lo:hi]))  # (frames, 40)
            offsets, size = window_offsets(len(mel), win, step)
            for o in offsets:
                region_ids.append(r)
                starts.append(s + o * FRAME_S)
                lengths.append(size * FRAME_S)
                mels.append(mel[o : o + size])
        embeddings = self._embed_mels(mels)
        start = np.asarray(starts)
        return Windows(np.asarray(region_ids), start, start + np.asarray(lengths), embeddings)

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

    def _cluster(self, w: Windows, count: DiarizationOptions) -> tuple[np.ndarray, int]:
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
