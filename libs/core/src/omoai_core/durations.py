"""Durations and times as people read them, written one way everywhere: subtitle timestamps
(``HH:MM:SS,mmm``) and clock readings (``M:SS``, ``H:MM:SS``)."""

from __future__ import annotations


def timestamp(seconds: float, sep: str = ",") -> str:
    """``HH:MM:SS<sep>mmm`` to the nearest millisecond: SRT uses ``,``, WebVTT ``.``, the ChunkFormer
    reference's segment times ``:``. Negative times read as 0."""
    ms_total = max(0, round(seconds * 1000))
    h, rem = divmod(ms_total, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def clock(seconds: float, *, hours: bool = False) -> str:
    """Whole seconds (rounded down, as a player shows them) as ``M:SS``, or ``H:MM:SS`` from an hour
    on or when ``hours`` asks for it. Negative times read as 0."""
    total = max(0, int(seconds))
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h or hours else f"{m:d}:{s:02d}"
