"""Realtime input audio to the engine's 16 kHz int16: base64 payloads decoded per the session's
format (``audio/pcm`` 24 kHz as OpenAI sends it, 16 kHz as our extension, G.711 ``audio/pcmu`` /
``audio/pcma`` at 8 kHz), then resampled by a streaming polyphase FIR in integer arithmetic.

Integer arithmetic makes the resampler exact under any split of the input: feeding a stream in
pieces of any sizes gives bit for bit the samples of feeding it whole (floating-point dot products
may round differently with different alignments). The batch comparison of a realtime session is
therefore on :func:`resample_all` of the same audio.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import numpy as np

from omoai_asr.geometry import SAMPLE_RATE

_SHIFT = 15  # taps are fixed point with 15 fraction bits
_TAPS_PER_PHASE = 24  # filter length per polyphase branch (L = up * 24 + 1)


class AudioFormatError(ValueError):
    """Bytes that cannot be audio of the session's format (the client's mistake)."""


@dataclass(frozen=True)
class InputFormat:
    """One session input format: its wire name, sample rate and bytes per sample."""

    name: str  # "audio/pcm", "audio/pcmu", "audio/pcma"
    rate: int

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.name == "audio/pcm" else 1

    def describe(self) -> dict[str, object]:
        return {"type": self.name, "rate": self.rate} if self.name == "audio/pcm" else {"type": self.name}


PCM24 = InputFormat("audio/pcm", 24000)
PCM16K = InputFormat("audio/pcm", 16000)
PCMU = InputFormat("audio/pcmu", 8000)
PCMA = InputFormat("audio/pcma", 8000)


def _ulaw_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 7
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (a >> 4) & 7
    mantissa = a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


_ULAW = _ulaw_table()
_ALAW = _alaw_table()


def decode_payload(audio_b64: str, fmt: InputFormat, *, max_bytes: int) -> np.ndarray:
    """Base64 text -> int16 samples at ``fmt.rate``; :class:`AudioFormatError` says what is wrong."""
    if len(audio_b64) > (max_bytes // 3 + 1) * 4:
        raise AudioFormatError(f"the append carries more than {max_bytes} bytes of audio; send smaller pieces")
    try:
        raw = base64.b64decode(audio_b64, validate=True)
    except (binascii.Error, ValueError):
        raise AudioFormatError("`audio` is not valid base64") from None
    if raw[:4] in (b"RIFF", b"RIFX", b"OggS", b"fLaC", b"ID3\x03") and len(raw) > 44:
        raise AudioFormatError(f"`audio` holds a file container; send raw {fmt.name} samples (no header)")
    if fmt.name == "audio/pcm":
        if len(raw) % 2:
            raise AudioFormatError("audio/pcm is 16-bit little-endian: the payload must have an even byte count")
        return np.frombuffer(raw, dtype="<i2").astype(np.int16)
    table = _ULAW if fmt.name == "audio/pcmu" else _ALAW
    return table[np.frombuffer(raw, dtype=np.uint8)]


def _design(up: int, down: int, rate_in: int) -> np.ndarray:
    """A Kaiser-windowed sinc low-pass at the up-sampled rate, cut below the lower Nyquist, as
    fixed-point int64 taps with gain ``up`` (so each polyphase branch has unit DC gain)."""
    length = up * _TAPS_PER_PHASE + 1
    fs = rate_in * up
    cutoff = 0.475 * min(rate_in, rate_in * up // down)  # a 5% transition band below Nyquist
    centre = (length - 1) / 2
    t = (np.arange(length) - centre) / fs
    h = 2 * cutoff / fs * np.sinc(2 * cutoff * t) * np.kaiser(length, 8.0) * up
    return np.round(h * (1 << _SHIFT)).astype(np.int64)


class Resampler:
    """Streaming ``rate_in`` -> 16 kHz int16: ``feed`` returns every output sample the input so far
    determines; ``flush`` the rest (the input is taken to end there, followed by silence)."""

    def __init__(self, rate_in: int) -> None:
        if rate_in == SAMPLE_RATE:
            self.up, self.down = 1, 1
        elif rate_in * 2 == SAMPLE_RATE * 3:
            self.up, self.down = 2, 3
        elif rate_in * 2 == SAMPLE_RATE:
            self.up, self.down = 2, 1
        else:
            raise ValueError(f"no resampler from {rate_in} Hz")
        self.taps = _design(self.up, self.down, rate_in) if self.up > 1 else np.ones(1, dtype=np.int64)
        self.centre = (len(self.taps) - 1) // 2
        self.reset()

    def reset(self) -> None:
        self._hist = np.zeros(0, dtype=np.int64)  # input samples from absolute index ``_base`` on
        self._base = 0
        self._seen = 0  # input samples fed
        self._made = 0  # output samples produced

    def feed(self, samples: np.ndarray) -> np.ndarray:
        return self._run(samples, final=False)

    def flush(self) -> np.ndarray:
        out = self._run(np.zeros(0, dtype=np.int16), final=True)
        self.reset()
        return out

    def _run(self, samples: np.ndarray, *, final: bool) -> np.ndarray:
        if self.up == 1:
            return samples.astype(np.int16, copy=True)
        self._hist = np.concatenate([self._hist, samples.astype(np.int64)])
        self._seen += len(samples)
        known = self.up * self._seen  # up-sampled indices [0, known) are known
        if final:
            end = -(-known // self.down)
        else:
            end = max(self._made, (known - 1 - self.centre) // self.down + 1)
        n = np.arange(self._made, end, dtype=np.int64)
        out = np.zeros(len(n), dtype=np.int64)
        pos = self.down * n + self.centre  # (n,) up-sampled index at the filter's centre tap
        for k in range(len(self.taps)):
            m = pos - k
            on = (m % self.up == 0) & (m >= 0)
            i = np.where(on, m // self.up - self._base, 0)
            valid = on & (i < len(self._hist))
            out += np.where(valid, self.taps[k] * self._hist[np.clip(i, 0, max(len(self._hist) - 1, 0))], 0)
        self._made = end
        # Keep only the input the next outputs can still reach.
        first_needed = max(0, (self.down * end + self.centre - (len(self.taps) - 1)) // self.up)
        drop = min(max(0, first_needed - self._base), len(self._hist))
        self._hist = self._hist[drop:]
        self._base += drop
        rounded: np.ndarray = (out + (1 << (_SHIFT - 1))) >> _SHIFT
        clipped: np.ndarray = np.clip(rounded, -32768, 32767).astype(np.int16)
        return clipped


def resample_all(samples: np.ndarray, rate_in: int) -> np.ndarray:
    """The whole recording at once: what the streaming resampler gives under any split."""
    r = Resampler(rate_in)
    return np.concatenate([r.feed(samples), r.flush()])
