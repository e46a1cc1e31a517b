"""Server VAD endpointing: the Silero VAD we ship run on a stream (its LSTM state carried from one
append to the next) and a small state machine that turns its speech probabilities into turns.

Positions are samples at 16 kHz in the session's audio clock (0 = the session's first sample).
A turn opens at the first 32 ms frame at or above ``threshold`` (its start moved back by
``prefix_padding_ms``) and closes once the probability stayed below ``threshold - 0.15`` for
``silence_duration_ms``; the turn's audio runs to that point, so the trailing silence is part of
the item as in OpenAI's ``audio_end_ms``. A turn longer than ``max_item_ms`` is cut there (one
item committed, the next one opened at once) so a never-ending turn still commits.

Defaults suit Vietnamese speech: hesitations of 300-700 ms are common within one sentence, so the
default silence is 900 ms (OpenAI's 500 ms would split them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from omoai_asr.diarization.vad import CHUNK, CONTEXT, SileroVad

FRAME = CHUNK  # samples per probability (32 ms)
HYSTERESIS = 0.15  # the probability must fall this far below the threshold to count as silence


@dataclass(frozen=True)
class VadParams:
    """OpenAI's ``server_vad`` parameters (and our maximum turn length)."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 900
    max_item_ms: int = 30_000

    def describe(self) -> dict[str, object]:
        return {
            "type": "server_vad",
            "threshold": self.threshold,
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
            "omoai_max_item_ms": self.max_item_ms,
        }


@dataclass(frozen=True)
class Boundary:
    """``start``: a turn opened at ``at``; ``stop``: it closed at ``at`` (its audio ends there);
    ``cut``: it reached the maximum length at ``at`` and a new turn opens there."""

    kind: Literal["start", "stop", "cut"]
    at: int


class Endpointer:
    """Probabilities of consecutive 32 ms frames in, turn boundaries out (pure logic)."""

    def __init__(self, params: VadParams, *, first_frame_at: int = 0, floor: int = 0) -> None:
        self.params = params
        self.next_frame_at = first_frame_at  # session sample where the next probability's frame starts
        self.floor = floor  # a turn never starts before this (audio already committed or cleared)
        self.start: int | None = None  # the open turn's start
        self.quiet_since: int | None = None
        self._silence = params.silence_duration_ms * 16
        self._padding = params.prefix_padding_ms * 16
        self._max = params.max_item_ms * 16

    @property
    def in_speech(self) -> bool:
        return self.start is not None

    def feed(self, probs: np.ndarray) -> list[Boundary]:
        out: list[Boundary] = []
        for p in probs.tolist():
            at = self.next_frame_at
            self.next_frame_at += FRAME
            if self.start is None:
                if p >= self.params.threshold:
                    self.start = max(self.floor, at - self._padding)
                    self.quiet_since = None
                    out.append(Boundary("start", self.start))
                continue
            if p < self.params.threshold - HYSTERESIS:
                if self.quiet_since is None:
                    self.quiet_since = at
                if self.next_frame_at - self.quiet_since >= self._silence:
                    out.append(Boundary("stop", self.next_frame_at))
                    self.floor, self.start, self.quiet_since = self.next_frame_at, None, None
                    continue
            else:
                self.quiet_since = None
            if self.next_frame_at - self.start >= self._max:
                out.append(Boundary("cut", self.next_frame_at))
                self.floor = self.start = self.next_frame_at
        return out

    def restart(self, at: int) -> None:
        """After a commit or clear by the client: no open turn, nothing before ``at``."""
        self.start, self.quiet_since = None, None
        self.floor = max(self.floor, at)


class StreamingVad:
    """Silero VAD over a stream: 16 kHz int16 in, one probability per complete 32 ms frame out."""

    def __init__(self, model: SileroVad) -> None:
        self.model = model
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._tail = np.zeros(CONTEXT, dtype=np.float32)  # the previous frame's last samples
        self._pending = np.zeros(0, dtype=np.float32)  # fewer than one frame, waiting for more

    def feed(self, samples: np.ndarray) -> np.ndarray:
        wav = np.concatenate([self._pending, samples.astype(np.float32) / 32768.0])
        n = len(wav) // FRAME
        self._pending = wav[n * FRAME :]
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        block = np.concatenate([self._tail, wav[: n * FRAME]])
        idx = np.arange(n)[:, None] * FRAME + np.arange(FRAME + CONTEXT)[None, :]
        probs, self._h, self._c = self.model.run_rows(block[idx], self._h, self._c)
        self._tail = wav[n * FRAME - CONTEXT : n * FRAME]
        return probs
