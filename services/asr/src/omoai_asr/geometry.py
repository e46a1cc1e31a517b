"""The geometry of decoding, torch-free: samples to fbank frames to encoder frames, the long-form
window a set of :class:`DecodeOptions` gives, and the options themselves. The HTTP layer and the
batcher reason with it (whether a recording fits one window) without loading the network; the
engine (``engine/``) computes with the same functions.

Shapes: N samples at 16 kHz; T = 1 + (N - 400) // 160 fbank frames (25 ms windows every 10 ms,
Kaldi's ``snip_edges``); T' = (T - 7) // 8 encoder frames (80 ms each) after the 8x subsampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omoai_audio import SAMPLE_RATE
from omoai_core.contracts.asr import DECODE_DEFAULTS
from omoai_core.errors import InvalidInputError

__all__ = [
    "FRAME_LENGTH",
    "FRAME_SECONDS",
    "FRAME_SHIFT",
    "MAX_RELATIVE_POSITION",
    "SAMPLE_RATE",
    "SUBSAMPLING",
    "DecodeOptions",
    "InvalidDecodeOptionsError",
    "fbank_frames",
    "fits_one_window",
    "max_batch_frames",
    "window_input_frames",
    "window_keep_frames",
]

FRAME_LENGTH = 400  # fbank window: 25 ms at 16 kHz
FRAME_SHIFT = 160  # fbank hop: 10 ms at 16 kHz
SUBSAMPLING = 8  # fbank frames per encoder frame
FRAME_SECONDS = 0.08  # one encoder frame
MAX_RELATIVE_POSITION = 5000  # the reference's positional table; it bounds chunk + context


def fbank_frames(num_samples: int) -> int:
    """Frames Kaldi produces with ``snip_edges``: 0 for fewer than one window of samples."""
    if num_samples < FRAME_LENGTH:
        return 0
    return 1 + (num_samples - FRAME_LENGTH) // FRAME_SHIFT


class InvalidDecodeOptionsError(InvalidInputError, ValueError):
    """Decode options the model cannot run with (also a ``ValueError`` for plain callers)."""


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode. Sizes are in encoder frames (80 ms each).

    ``total_batch_duration`` (seconds) bounds the work of one forward pass, as in the
    reference: a long-form window covers ``int(tbd // 0.01) // 2`` input frames rounded down to
    whole chunks (at least one chunk, where the reference crashes), and a masked batch holds at
    most that many input frames.
    """

    chunk_size: int = DECODE_DEFAULTS.chunk_size
    left_context: int = DECODE_DEFAULTS.left_context
    right_context: int = DECODE_DEFAULTS.right_context
    total_batch_duration: float = DECODE_DEFAULTS.total_batch_duration
    include_frames: bool = False  # put the per-frame argmax path in the transcript
    word_timestamps: bool = DECODE_DEFAULTS.word_timestamps
    max_silence_duration: float = 0.5  # blanks that close a segment (0.5 s -> 6 frames)

    def __post_init__(self) -> None:
        for name in ("chunk_size", "left_context", "right_context"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidDecodeOptionsError(f"{name} must be an integer, got {value!r}")
        if self.chunk_size < 1:
            raise InvalidDecodeOptionsError(
                f"chunk_size must be at least 1 encoder frame, got {self.chunk_size} "
                "(full attention, -1 in the reference CLI, is not supported for long-form decoding)"
            )
        if self.left_context < 0 or self.right_context < 0:
            raise InvalidDecodeOptionsError(
                f"left_context and right_context must be >= 0, got {self.left_context} and {self.right_context}"
            )
        if self.chunk_size + max(self.left_context, self.right_context) >= MAX_RELATIVE_POSITION:
            raise InvalidDecodeOptionsError(
                f"chunk_size + context must stay below {MAX_RELATIVE_POSITION} frames (the model's "
                f"relative position table), got chunk {self.chunk_size}, left {self.left_context}, "
                f"right {self.right_context}"
            )
        tbd = self.total_batch_duration
        if isinstance(tbd, bool) or not isinstance(tbd, int | float) or not math.isfinite(tbd) or tbd <= 0:
            raise InvalidDecodeOptionsError(f"total_batch_duration must be a positive number of seconds, got {tbd!r}")
        msd = self.max_silence_duration
        if isinstance(msd, bool) or not isinstance(msd, int | float) or not math.isfinite(msd) or msd < FRAME_SECONDS:
            raise InvalidDecodeOptionsError(
                f"max_silence_duration must be at least {FRAME_SECONDS} s (one encoder frame), got {msd!r}"
            )

    @property
    def max_silence_frames(self) -> int:
        """Consecutive blank frames that close a segment (the reference's ``duration // 0.08``)."""
        return int(self.max_silence_duration // FRAME_SECONDS)


def window_keep_frames(options: DecodeOptions) -> int:
    """Encoder frames a long-form window keeps (the reference's truncated context size)."""
    budget = max_batch_frames(options)
    return options.chunk_size * max(1, budget // options.chunk_size // SUBSAMPLING)


def max_batch_frames(options: DecodeOptions) -> int:
    """Input (fbank) frames a masked batch may hold (the reference's batch budget)."""
    return int(options.total_batch_duration // 0.01) // 2  # input frames, 10 ms each


def window_input_frames(options: DecodeOptions) -> int:
    """The most fbank frames one long-form window covers (its kept frames and the subsampling's context)."""
    return SUBSAMPLING * window_keep_frames(options) + SUBSAMPLING - 1


def fits_one_window(num_samples: int, options: DecodeOptions) -> bool:
    """Whether a recording is decoded in one long-form window (and so can share a masked batch)."""
    return fbank_frames(num_samples) <= window_input_frames(options)
