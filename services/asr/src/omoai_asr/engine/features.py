"""Audio samples to the model's input features: Kaldi log-mel filterbanks and global CMVN.

The reference computes ``torchaudio.compliance.kaldi.fbank`` on int16 sample *values* held as
float32 (not scaled to ±1). We compute the same thing with plain torch so that torchaudio is not
needed, vectorised over frames (one strided view, one batched FFT, one matmul).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from omoai_asr.geometry import FRAME_LENGTH, FRAME_SHIFT, SAMPLE_RATE
from omoai_asr.geometry import fbank_frames as num_frames

__all__ = ["SAMPLE_RATE", "Cmvn", "fbank", "load_cmvn", "num_frames", "samples_to_tensor"]

FFT_SIZE = 512  # frame length rounded up to a power of two, as Kaldi does
PREEMPHASIS = 0.97
LOW_FREQ = 20.0
_EPS = torch.finfo(torch.float32).eps


def samples_to_tensor(samples: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """int16 (or already float) mono samples to a float32 tensor of the same *values*.

    One vectorised conversion; the reference converts element by element.
    """
    arr = np.asarray(samples)
    if arr.ndim != 1:
        raise ValueError(f"expected mono samples of shape (N,), got {arr.shape}")
    if arr.dtype == np.int16 and torch.device(device).type != "cpu":
        # Move the 2-byte samples and widen on the device: half the host-to-device traffic.
        host = np.ascontiguousarray(arr) if arr.flags.writeable else arr.copy()
        return torch.from_numpy(host).to(device).to(torch.float32)
    return torch.from_numpy(arr.astype(np.float32)).to(device)  # one vectorised copy


def _mel(freq: float) -> float:
    return 1127.0 * math.log(1.0 + freq / 700.0)


def _mel_tensor(freq: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log(1.0 + freq / 700.0)


@lru_cache(maxsize=8)
def _mel_banks_cpu(n_mels: int) -> torch.Tensor:
    """Kaldi triangular mel filters on the mel scale, (n_mels, FFT_SIZE // 2 + 1) float32."""
    n_fft_bins = FFT_SIZE // 2
    nyquist = 0.5 * SAMPLE_RATE
    bin_width = SAMPLE_RATE / FFT_SIZE
    mel_low = _mel(LOW_FREQ)
    mel_high = _mel(nyquist)
    delta = (mel_high - mel_low) / (n_mels + 1)
    idx = torch.arange(n_mels).unsqueeze(1)
    left = mel_low + idx * delta
    center = mel_low + (idx + 1.0) * delta
    right = mel_low + (idx + 2.0) * delta
    mel = _mel_tensor(bin_width * torch.arange(n_fft_bins)).unsqueeze(0)  # (1, 256)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    # Kaldi has no filter weight on the Nyquist bin.
    return torch.nn.functional.pad(banks, (0, 1)).float()


@lru_cache(maxsize=4)
def _povey_window_cpu() -> torch.Tensor:
    return torch.hann_window(FRAME_LENGTH, periodic=False, dtype=torch.float32).pow(0.85)


def fbank(waveform: torch.Tensor, n_mels: int = 80, *, block_frames: int | None = None) -> torch.Tensor:
    """Kaldi fbank of float32 sample values: (N,) -> (T, n_mels), T = 1 + (N - 400) // 160.

    Settings: 25 ms / 10 ms, dither 0, DC removal, pre-emphasis 0.97, Povey window, power
    spectrum, mel filters from 20 Hz to Nyquist, natural log floored at float32 epsilon.
    Fewer than 400 samples give a (0, n_mels) tensor (the reference raises instead).
    Frames are independent, so they are processed ``block_frames`` at a time: the same result
    with bounded temporary memory for hour-long input. By default 2048 frames (20 s, about 12 MB
    of temporaries, as fast as larger blocks) on CPU and 65536 (11 min, about 400 MB) on an
    accelerator, where one hour is then six batched FFTs.
    """
    waveform = waveform.to(torch.float32).contiguous()
    n = num_frames(waveform.numel())
    device = waveform.device
    if block_frames is None:
        block_frames = 2048 if device.type == "cpu" else 65536
    out = torch.empty((n, n_mels), dtype=torch.float32, device=device)
    if n == 0:
        return out
    window = _povey_window_cpu().to(device)
    banks_t = _mel_banks_cpu(n_mels).to(device).T  # (257, n_mels)
    frames_all = waveform.as_strided((n, FRAME_LENGTH), (FRAME_SHIFT, 1))  # (T, 400) view
    for lo in range(0, n, block_frames):
        frames = frames_all[lo : lo + block_frames]
        frames = frames - frames.mean(dim=1, keepdim=True)
        # Pre-emphasis with the first sample of each frame as its own predecessor (Kaldi).
        previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
        frames = (frames - PREEMPHASIS * previous) * window
        power = torch.fft.rfft(frames, n=FFT_SIZE).abs().pow(2.0)  # (B, 257), zero-padded to 512
        out[lo : lo + frames.size(0)] = torch.clamp(_mel_energies(power, banks_t), min=_EPS).log()
    return out


MEL_ROWS = 256  # frames per GEMM of the mel projection (see _mel_energies)


def _mel_energies(power: torch.Tensor, banks_t: torch.Tensor) -> torch.Tensor:
    """(B, 257) power spectra -> (B, n_mels), each row independent of the others bit for bit.

    A GEMM's rounding depends on its shape (the kernel chosen for M rows), so ``power @ banks``
    would give a frame slightly different values depending on how many frames were computed
    with it. Live decoding computes features piece by piece and must get exactly the batch
    decode's values, so the frames go through zero-padded blocks of ``MEL_ROWS`` rows, one
    fixed-shape GEMM each: a frame's energies depend on that frame alone. (A batched matmul
    would also be row-independent, but it reduces in another order than the reference's one
    GEMM, which moves the sensitive low mel bins by up to 3e-3.)
    """
    b = power.size(0)
    blocks = -(-b // MEL_ROWS)
    padded = F.pad(power, (0, 0, 0, blocks * MEL_ROWS - b))
    return torch.cat([block @ banks_t for block in padded.split(MEL_ROWS)])[:b]


@dataclass(frozen=True)
class Cmvn:
    """Global mean/inverse-std normalisation of fbank features."""

    mean: torch.Tensor  # (n_mels,)
    istd: torch.Tensor  # (n_mels,)

    def apply(self, feats: torch.Tensor) -> torch.Tensor:
        """(..., n_mels) -> (..., n_mels)."""
        return (feats - self.mean.to(feats.device)) * self.istd.to(feats.device)


def _cmvn_from_stats(means: list[float], var_stats: list[float], count: float) -> Cmvn:
    # Done in Python floats (float64), then cast: the reference does exactly this.
    mean = [m / count for m in means]
    istd = []
    for m, v in zip(mean, var_stats, strict=True):
        var = max(v / count - m * m, 1.0e-20)
        istd.append(1.0 / math.sqrt(var))
    return Cmvn(torch.tensor(mean, dtype=torch.float32), torch.tensor(istd, dtype=torch.float32))


def load_cmvn(path: Path, *, is_json: bool = True) -> Cmvn:
    """Read a ``global_cmvn`` file: JSON ``{mean_stat, var_stat, frame_num}`` or Kaldi text.

    Raises ``ValueError`` for a file that is neither.
    """
    text = path.read_text(encoding="utf-8")
    if is_json:
        stats = json.loads(text)
        return _cmvn_from_stats(
            [float(x) for x in stats["mean_stat"]],
            [float(x) for x in stats["var_stat"]],
            float(stats["frame_num"]),
        )
    # Kaldi text matrix "[ m_1 .. m_D count \n v_1 .. v_D 0 ]".
    tokens = text.split()
    if len(tokens) < 6 or tokens[0] != "[" or tokens[-1] != "]" or tokens[-2] != "0":
        raise ValueError(f"{path} is not a Kaldi text CMVN matrix (binary files are not supported)")
    dim = (len(tokens) - 4) // 2
    means = [float(t) for t in tokens[1 : dim + 1]]
    count = float(tokens[dim + 1])
    variances = [float(t) for t in tokens[dim + 2 : 2 * dim + 2]]
    return _cmvn_from_stats(means, variances, count)
