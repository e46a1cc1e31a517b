"""Decoding of any ffmpeg-readable input to 16 kHz mono int16.

PCM16 mono 16 kHz WAV files (the common case for prepared audio) are read directly; everything else
goes through ``ffmpeg``. Empty, corrupt, non-audio and too-long inputs each raise their own
:class:`omoai_core.errors.AudioError` subclass with a message that says what is wrong.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from omoai_core.errors import (
    AudioTooLongError,
    ConfigError,
    CorruptAudioError,
    EmptyAudioError,
    NotAudioError,
)

SAMPLE_RATE = 16000
_BYTES_PER_SAMPLE = 2


@dataclass(frozen=True)
class Audio:
    """Decoded audio. ``samples``: (N,) int16 at :data:`SAMPLE_RATE`, mono."""

    samples: np.ndarray
    sample_rate: int = SAMPLE_RATE

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def _ffmpeg(name: str = "ffmpeg") -> str:
    path = shutil.which(name)
    if path is None:
        raise ConfigError(f"{name} is not installed; install it (e.g. apt-get install ffmpeg) to decode audio")
    return path


def decode_audio(source: bytes | str | os.PathLike[str], *, max_duration_s: float | None = None) -> Audio:
    """Decode ``source`` (raw bytes of a file, or a path) to 16 kHz mono int16.

    Raises EmptyAudioError (no bytes or no samples), NotAudioError (no audio stream), CorruptAudioError
    (ffmpeg cannot decode it) and AudioTooLongError (over ``max_duration_s``).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise EmptyAudioError("the audio is empty (0 bytes)")
        fast = _read_plain_wav(io.BytesIO(data), max_duration_s)
        if fast is not None:
            return fast
        with tempfile.NamedTemporaryFile(suffix=".audio") as tmp:
            tmp.write(data)
            tmp.flush()
            return _decode_with_ffmpeg(Path(tmp.name), max_duration_s)
    path = Path(source)
    if not path.is_file():
        raise EmptyAudioError(f"no such audio file: {path}")
    if path.stat().st_size == 0:
        raise EmptyAudioError(f"the audio file {path.name} is empty (0 bytes)")
    with path.open("rb") as fh:
        fast = _read_plain_wav(fh, max_duration_s)
    if fast is not None:
        return fast
    return _decode_with_ffmpeg(path, max_duration_s)


def _read_plain_wav(fh: IO[bytes], max_duration_s: float | None) -> Audio | None:
    """PCM16 mono 16 kHz WAV without ffmpeg, or None when the input is anything else."""
    try:
        with wave.open(fh, "rb") as wav:
            if (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) != (1, 2, SAMPLE_RATE):
                return None
            n = wav.getnframes()
            _check_length(n / SAMPLE_RATE, max_duration_s)
            raw = wav.readframes(n)
    except (wave.Error, EOFError, ValueError):
        return None
    if len(raw) != n * _BYTES_PER_SAMPLE:
        return None  # truncated header/data: let ffmpeg judge it
    samples = np.frombuffer(raw, dtype="<i2").astype(np.int16, copy=False)
    if samples.size == 0:
        raise EmptyAudioError("the audio contains no samples")
    return Audio(samples)


def _check_length(duration: float, max_duration_s: float | None) -> None:
    if max_duration_s is not None and duration > max_duration_s:
        raise AudioTooLongError(
            f"the audio is {duration:.1f} s long; the limit is {max_duration_s:.0f} s",
            details={"duration_s": round(duration, 3), "max_duration_s": max_duration_s},
        )


def _probe(path: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [_ffmpeg("ffprobe"), "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0:
        reason = _last_line(proc.stderr)
        raise CorruptAudioError(f"the input cannot be read as audio: {reason}")
    try:
        info: dict[str, Any] = json.loads(proc.stdout or b"{}")
        return info
    except json.JSONDecodeError as e:
        raise CorruptAudioError("the input cannot be read as audio (unreadable container)") from e


def _decode_with_ffmpeg(path: Path, max_duration_s: float | None) -> Audio:
    info = _probe(path)
    if not any(s.get("codec_type") == "audio" for s in info.get("streams", [])):
        raise NotAudioError("the input has no audio stream (is it an audio or video file?)")
    duration = _declared_duration(info)
    if duration is not None:
        _check_length(duration, max_duration_s)
    cmd = [_ffmpeg(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-vn"]
    if max_duration_s is not None:
        # Decode a little past the limit so an input that lied about its duration is still caught.
        cmd += ["-t", f"{max_duration_s + 1:.3f}"]
    cmd += ["-f", "s16le", "-acodec", "pcm_s16le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise CorruptAudioError(f"the audio cannot be decoded: {_last_line(proc.stderr)}")
    samples = np.frombuffer(proc.stdout, dtype="<i2").astype(np.int16, copy=False)
    if samples.size == 0:
        raise EmptyAudioError("the audio decodes to no samples (empty or truncated stream)")
    _check_length(samples.size / SAMPLE_RATE, max_duration_s)
    return Audio(samples)


def _declared_duration(info: dict[str, Any]) -> float | None:
    values = [info.get("format", {}).get("duration")]
    values += [s.get("duration") for s in info.get("streams", []) if s.get("codec_type") == "audio"]
    for v in values:
        try:
            d = float(v)
        except (TypeError, ValueError):
            continue
        if d > 0:
            return d
    return None


def _last_line(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown decoder error"
