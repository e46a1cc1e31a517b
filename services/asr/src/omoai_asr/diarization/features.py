"""The speaker encoder's front end: a 40-channel mel power spectrogram (not log), 25 ms windows
every 10 ms at 16 kHz, Slaney-style mel filters with area normalisation — the features the GE2E
encoder in ``resemblyzer``'s wheel was trained on. Computed with plain numpy/torch.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from omoai_audio import INT16_SCALE, SAMPLE_RATE

__all__ = ["HOP", "N_FFT", "N_MELS", "SAMPLE_RATE", "mel_filters", "mel_spectrogram", "normalise_volume"]

N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
TARGET_DBFS = -30.0  # loudness the encoder's training audio was normalised to (raised only)


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    mel = hz / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


@lru_cache(maxsize=4)
def mel_filters(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """Triangular filters, (n_mels, n_fft // 2 + 1) float32, each scaled to unit area (Slaney)."""
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2.0), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def normalise_volume(samples: np.ndarray) -> np.ndarray:
    """int16 (or float in [-1, 1]) samples to float32 in [-1, 1], raised to -30 dBFS if quieter.

    One float32 copy; the loudness is summed in float64 blocks (no float64 copy of an hour)."""
    x = np.asarray(samples)
    wav = x.astype(np.float32)  # a copy either way
    if x.dtype == np.int16:
        wav /= INT16_SCALE
    if not wav.size:
        return wav
    block = 1 << 20
    energy = sum(
        float(np.dot(b, b)) for b in (wav[i : i + block].astype(np.float64) for i in range(0, wav.size, block))
    )
    rms = (energy / wav.size) ** 0.5
    if rms <= 1e-9:
        return wav
    change_db = TARGET_DBFS - 20.0 * np.log10(rms)
    if change_db > 0:
        wav *= np.float32(10 ** (change_db / 20.0))
    return wav


def mel_spectrogram(wav: torch.Tensor) -> torch.Tensor:
    """(N,) float32 waveform -> (frames, 40) mel power spectrogram; frames = 1 + N // 160.

    Frames are centred (the signal is zero-padded by half a window on both sides).
    """
    window = torch.hann_window(N_FFT, periodic=True, device=wav.device, dtype=torch.float32)
    spec = torch.stft(
        wav.float(),
        N_FFT,
        hop_length=HOP,
        win_length=N_FFT,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )  # (201, frames)
    power = spec.real.square() + spec.imag.square()
    banks = torch.from_numpy(mel_filters()).to(wav.device)
    return (banks @ power).T.contiguous()  # (frames, 40)
