"""What a diarization backend takes and returns (frozen dataclasses; no torch here)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from omoai_core.contracts.asr import MAX_SPEAKERS  # one limit for the API and the engine


@dataclass(frozen=True)
class DiarizationOptions:
    """Per request: the number of speakers, or bounds for its estimate; named reference voices."""

    num_speakers: int | None = None
    min_speakers: int = 1
    max_speakers: int = 8
    #: name -> (N,) int16 samples at 16 kHz of that person speaking (a few seconds)
    references: Mapping[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_counts(cls, num: int | None, low: int | None, high: int | None) -> DiarizationOptions:
        """From a request's optional counts: ``min`` defaults to 1, ``max`` to 8 (or more when the
        other counts need it). :class:`ValueError` names what is inconsistent."""
        low = low or 1
        return cls(num_speakers=num, min_speakers=low, max_speakers=high or max(8, low, num or 0))

    def __post_init__(self) -> None:
        for name in ("num_speakers", "min_speakers", "max_speakers"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SPEAKERS):
                raise ValueError(f"{name} must be an integer in 1..{MAX_SPEAKERS}, got {v!r}")
        if self.min_speakers > self.max_speakers:
            raise ValueError(f"min_speakers ({self.min_speakers}) exceeds max_speakers ({self.max_speakers})")
        if self.num_speakers is not None and not self.min_speakers <= self.num_speakers <= self.max_speakers:
            raise ValueError(
                f"num_speakers ({self.num_speakers}) is outside [min_speakers, max_speakers] "
                f"= [{self.min_speakers}, {self.max_speakers}]"
            )


@dataclass(frozen=True)
class SpeakerTurn:
    """One speaker talking over ``[start, end)`` seconds. Turns of different speakers may overlap."""

    speaker: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Diarization:
    """Who spoke when. ``speakers`` in order of first appearance (``S1``, ``S2``... or known names)."""

    turns: tuple[SpeakerTurn, ...]
    speakers: tuple[str, ...]
    duration: float
    backend: str

    def rttm(self, uri: str = "audio") -> str:
        """NIST RTTM lines, one per turn."""
        return "".join(
            f"SPEAKER {uri} 1 {t.start:.3f} {t.duration:.3f} <NA> <NA> {t.speaker} <NA> <NA>\n" for t in self.turns
        )


class DiarizationBackend(Protocol):
    """The seam between the service and a diarization implementation."""

    name: str

    def diarize(self, samples: np.ndarray, options: DiarizationOptions) -> Diarization:
        """(N,) int16 mono samples at 16 kHz -> speaker turns."""
        ...


def labelled(
    turns: Sequence[tuple[Hashable, float, float]], names: Mapping[Any, str], duration: float, backend: str
) -> Diarization:
    """Backend-internal speaker keys to labels: a matched reference's name, else ``S1``, ``S2``...
    in order of first appearance (skipping labels a name already took)."""
    ordered = sorted(turns, key=lambda t: (t[1], t[2]))
    label: dict[Hashable, str] = {}
    taken = set(names.values())
    n = 0
    for key, _, _ in ordered:
        if key in label:
            continue
        if key in names:
            label[key] = names[key]
            continue
        n += 1
        while f"S{n}" in taken:
            n += 1
        label[key] = f"S{n}"
    out = tuple(SpeakerTurn(label[key], round(s, 3), round(e, 3)) for key, s, e in ordered)
    return Diarization(out, tuple(dict.fromkeys(t.speaker for t in out)), duration, backend)
