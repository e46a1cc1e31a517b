"""Decoding options: chunk and context sizes, the long-form window budget, output switches."""

from __future__ import annotations

import math
from dataclasses import dataclass

from omoai_core.errors import InvalidInputError

from omoai_asr.engine.model import MAX_RELATIVE_POSITION

FRAME_SECONDS = 0.08


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

    chunk_size: int = 64
    left_context: int = 128
    right_context: int = 128
    total_batch_duration: float = 1800.0
    include_frames: bool = False  # put the per-frame argmax path in the transcript
    word_timestamps: bool = True
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
