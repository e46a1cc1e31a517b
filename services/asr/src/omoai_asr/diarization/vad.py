"""Voice activity: Silero VAD v6 (the ONNX export that ``faster-whisper`` ships) run directly with
``onnxruntime``, and speech probabilities turned into speech regions.

The graph's signature (read from the model): ``input`` (chunks, 576) float32 — each row is 512
new samples (32 ms at 16 kHz) after the previous row's last 64 samples; ``h`` and ``c``
(1, 1, 128) LSTM state carried across calls; outputs ``speech_probs`` (chunks,) and the new
``hn``/``cn``. The LSTM runs along the chunk axis, so a long recording is a few calls.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omoai_audio import SAMPLE_RATE
from omoai_core.errors import ConfigError

CHUNK = 512  # samples per probability (32 ms)
CONTEXT = 64  # samples of the previous chunk each row starts with
CHUNK_SECONDS = CHUNK / SAMPLE_RATE
_ROWS_PER_CALL = 8192  # ~262 s of audio, 19 MB of input per call


@dataclass(frozen=True)
class VadOptions:
    onset: float = 0.5  # probability that opens a speech region
    offset: float = 0.35  # probability below which it may close
    min_speech_s: float = 0.2  # shorter regions are dropped
    min_silence_s: float = 0.1  # shorter pauses do not close a region
    pad_s: float = 0.03  # added on both sides of every region


class SileroVad:
    """One onnxruntime session; calls are serialised (the session state is per call anyway)."""

    def __init__(self, path: Path, *, threads: int = 1) -> None:
        try:
            import onnxruntime
        except ImportError as e:  # pragma: no cover - the diarization extra is missing
            raise ConfigError("diarization needs onnxruntime: pip install 'omoai-asr[diarization]'") from e
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:
            raise ConfigError(f"cannot load the VAD model {path}: {e}") from e
        names = {i.name for i in self._session.get_inputs()}
        if names != {"input", "h", "c"}:
            raise ConfigError(f"{path} is not the Silero VAD v6 graph this code runs (inputs {sorted(names)})")
        self._lock = threading.Lock()

    def probabilities(self, wav: np.ndarray) -> np.ndarray:
        """(N,) float32 in [-1, 1] at 16 kHz -> (ceil(N / 512),) speech probability per 32 ms."""
        n_chunks = -(-len(wav) // CHUNK)
        if n_chunks == 0:
            return np.zeros(0, dtype=np.float32)
        h = np.zeros((1, 1, 128), dtype=np.float32)
        c = np.zeros((1, 1, 128), dtype=np.float32)
        out = []
        with self._lock:
            # Block by block (bounded memory): rows of 64 context samples + 512 new ones.
            for first in range(0, n_chunks, _ROWS_PER_CALL):
                rows_n = min(_ROWS_PER_CALL, n_chunks - first)
                lo = first * CHUNK
                block = np.zeros(rows_n * CHUNK + CONTEXT, dtype=np.float32)
                start = max(0, lo - CONTEXT)
                piece = wav[start : lo + rows_n * CHUNK]
                block[CONTEXT - (lo - start) : CONTEXT - (lo - start) + len(piece)] = piece
                idx = np.arange(rows_n)[:, None] * CHUNK + np.arange(CHUNK + CONTEXT)[None, :]
                probs, h, c = self._session.run(None, {"input": block[idx], "h": h, "c": c})
                out.append(np.asarray(probs, dtype=np.float32).reshape(-1))
        return np.concatenate(out)

    def run_rows(self, rows: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One call on prepared rows (rows, 576) with the caller's LSTM state: a stream's next frames
        (the realtime endpointer carries ``h`` and ``c`` from one call to the next)."""
        with self._lock:
            probs, h, c = self._session.run(None, {"input": rows, "h": h, "c": c})
        return np.asarray(probs, dtype=np.float32).reshape(-1), h, c


def speech_regions(probs: np.ndarray, duration: float, options: VadOptions = VadOptions()) -> list[tuple[float, float]]:
    """Hysteresis over the probabilities: regions open at ``onset``, close after ``min_silence_s``
    below ``offset``; padded, clipped to ``[0, duration]``, overlapping ones merged."""
    regions: list[tuple[float, float]] = []
    start: int | None = None
    quiet = 0
    min_quiet = max(1, round(options.min_silence_s / CHUNK_SECONDS))
    for i, p in enumerate(probs):
        if start is None:
            if p >= options.onset:
                start, quiet = i, 0
            continue
        if p < options.offset:
            quiet += 1
            if quiet >= min_quiet:
                regions.append((start * CHUNK_SECONDS, (i - quiet + 1) * CHUNK_SECONDS))
                start = None
        else:
            quiet = 0
    if start is not None:
        regions.append((start * CHUNK_SECONDS, (len(probs) - quiet) * CHUNK_SECONDS))
    merged: list[tuple[float, float]] = []
    for s, e in regions:
        if e - s < options.min_speech_s:
            continue
        s, e = max(0.0, s - options.pad_s), min(duration, e + options.pad_s)
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged
