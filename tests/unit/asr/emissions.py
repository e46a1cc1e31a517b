"""Transducer emissions in the reference's per-frame shape, for comparing against its fixtures."""

from __future__ import annotations

from omoai_asr.engine.transducer import StreamEmissions


def per_frame(emissions: StreamEmissions, n_frames: int) -> list[list[int]]:
    """Emissions as one list per frame (the reference's output grid without padding)."""
    out: list[list[int]] = [[] for _ in range(n_frames)]
    for token, frame in zip(emissions.tokens.tolist(), emissions.frames.tolist(), strict=True):
        out[frame].append(token)
    return out
