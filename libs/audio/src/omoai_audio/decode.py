"""Decoding of any ffmpeg-readable input to 16 kHz mono int16, with bounded memory and time.

PCM16 mono 16 kHz WAV files (the common case for prepared audio) are read directly; everything else
goes through ``ffmpeg``, whose output is streamed: samples are counted while they arrive and spooled
to an unlinked temporary file, and decoding stops the moment the count passes ``max_duration_s``.
A refused input (a decompression bomb: a few KB of FLAC that expand to hours of silence) therefore
costs a pipe buffer of memory, never what it expands to. ffprobe and ffmpeg run under a wall-clock
limit; :func:`decode_audio_async` kills the ffmpeg of a cancelled caller and returns only once that
process has exited, so a decode never outlives the request that asked for it.

Empty, corrupt, non-audio, too-long and too-slow inputs each raise their own
:class:`omoai_core.errors.AudioError` subclass with a message that says what is wrong and never
names a server path.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import shutil
import subprocess
import tempfile
import threading
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from omoai_core.errors import (
    AudioDecodeTimeoutError,
    AudioTooLongError,
    ConfigError,
    CorruptAudioError,
    EmptyAudioError,
    NotAudioError,
)

SAMPLE_RATE = 16000
#: int16 full scale: ``samples / INT16_SCALE`` is float audio in [-1, 1).
INT16_SCALE = 32768.0
_BYTES_PER_SAMPLE = 2
_READ = 1 << 16
#: ffprobe reads headers only; this is its limit when the caller gives none shorter.
PROBE_TIMEOUT_S = 30.0
#: ffmpeg's own downmix needs a known channel layout; beyond this many channels we average them.
_MAX_LAYOUT_CHANNELS = 8


@dataclass(frozen=True)
class Audio:
    """Decoded audio. ``samples``: (N,) int16 at :data:`SAMPLE_RATE`, mono."""

    samples: np.ndarray
    sample_rate: int = SAMPLE_RATE

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


class DecodeCancelled(Exception):
    """The caller cancelled the decode (its processes were killed)."""


class DecodeControl:
    """Kills the ffprobe/ffmpeg of one decode from another thread; thread safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self.cancelled = False
        self.expired = False

    def attach(self, proc: subprocess.Popen[bytes] | None) -> None:
        with self._lock:
            self._proc = proc
            if proc is not None and (self.cancelled or self.expired):
                proc.kill()

    def cancel(self) -> None:
        self._stop("cancelled")

    def expire(self) -> None:
        self._stop("expired")

    def _stop(self, why: str) -> None:
        with self._lock:
            setattr(self, why, True)
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()

    def check(self, timeout_s: float | None) -> None:
        if self.cancelled:
            raise DecodeCancelled
        if self.expired:
            raise AudioDecodeTimeoutError(
                f"decoding the audio took longer than {timeout_s:g} s and was stopped",
                details={"decode_timeout_s": timeout_s},
            )


def _ffmpeg(name: str = "ffmpeg") -> str:
    path = shutil.which(name)
    if path is None:
        raise ConfigError(f"{name} is not installed; install it (e.g. apt-get install ffmpeg) to decode audio")
    return path


def decode_audio(
    source: bytes | str | os.PathLike[str],
    *,
    max_duration_s: float | None = None,
    timeout_s: float | None = None,
    control: DecodeControl | None = None,
) -> Audio:
    """Decode ``source`` (raw bytes of a file, or a path) to 16 kHz mono int16.

    Raises EmptyAudioError (no bytes or no samples), NotAudioError (no audio stream), CorruptAudioError
    (ffmpeg cannot decode it), AudioTooLongError (over ``max_duration_s``, found while decoding) and
    AudioDecodeTimeoutError (ffprobe and ffmpeg together took over ``timeout_s``).
    """
    control = control or DecodeControl()
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
            return _decode_with_ffmpeg(Path(tmp.name), max_duration_s, timeout_s, control)
    path = Path(source)
    if not path.is_file():
        raise EmptyAudioError(f"no such audio file: {path}")
    if path.stat().st_size == 0:
        raise EmptyAudioError(f"the audio file {path.name} is empty (0 bytes)")
    with path.open("rb") as fh:
        fast = _read_plain_wav(fh, max_duration_s)
    if fast is not None:
        return fast
    return _decode_with_ffmpeg(path, max_duration_s, timeout_s, control)


async def decode_audio_async(
    source: bytes | str | os.PathLike[str], *, max_duration_s: float | None = None, timeout_s: float | None = None
) -> Audio:
    """:func:`decode_audio` in a worker thread. Cancelling the caller kills ffmpeg and waits until it
    has exited before the cancellation propagates (so admission counts a decode until it really ends)."""
    control = DecodeControl()
    call = functools.partial(decode_audio, source, max_duration_s=max_duration_s, timeout_s=timeout_s, control=control)
    future = asyncio.get_running_loop().run_in_executor(None, call)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        control.cancel()
        while not future.done():
            try:
                await asyncio.shield(future)
            except asyncio.CancelledError:
                continue
            except BaseException:  # noqa: BLE001 - the outcome of a cancelled decode is nobody's
                break
        if future.done() and not future.cancelled():
            future.exception()  # retrieved: no "exception was never retrieved" warning
        raise


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


def _run_probe(path: Path, timeout_s: float, control: DecodeControl, total_timeout_s: float | None) -> dict[str, Any]:
    cmd = [_ffmpeg("ffprobe"), "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    control.attach(proc)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        control.expire()
        proc.communicate()
        out, err = b"", b""
    finally:
        control.attach(None)
    control.check(total_timeout_s if total_timeout_s is not None else timeout_s)
    if proc.returncode != 0:
        raise CorruptAudioError(f"the input cannot be read as audio: {_last_line(err, path)}")
    try:
        info: dict[str, Any] = json.loads(out or b"{}")
        return info
    except json.JSONDecodeError as e:
        raise CorruptAudioError("the input cannot be read as audio (unreadable container)") from e


def _decode_with_ffmpeg(
    path: Path, max_duration_s: float | None, timeout_s: float | None, control: DecodeControl
) -> Audio:
    timer = threading.Timer(timeout_s, control.expire) if timeout_s is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        probe_limit = min(PROBE_TIMEOUT_S, timeout_s) if timeout_s is not None else PROBE_TIMEOUT_S
        info = _run_probe(path, probe_limit, control, timeout_s)
        streams = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
        if not streams:
            raise NotAudioError("the input has no audio stream (is it an audio or video file?)")
        duration = _declared_duration(info)
        if duration is not None:
            _check_length(duration, max_duration_s)
        return _stream_decode(path, streams[0], max_duration_s, timeout_s, control)
    finally:
        if timer is not None:
            timer.cancel()


def _downmix_args(stream: dict[str, Any]) -> list[str]:
    """Mono for any layout: ffmpeg's matrix when it knows the layout, an equal-weight pan otherwise
    (ffmpeg cannot rematrix e.g. 64 channels without a layout, and refuses the file)."""
    try:
        channels = int(stream.get("channels") or 0)
    except (TypeError, ValueError):
        channels = 0
    if channels > _MAX_LAYOUT_CHANNELS or (channels > 2 and not stream.get("channel_layout")):
        weight = f"{1.0 / channels:.8f}"
        return ["-af", "pan=mono|c0=" + "+".join(f"{weight}*c{i}" for i in range(channels))]
    return ["-ac", "1"]


def _stream_decode(
    path: Path, stream: dict[str, Any], max_duration_s: float | None, timeout_s: float | None, control: DecodeControl
) -> Audio:
    cmd = [_ffmpeg(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-vn"]
    cmd += _downmix_args(stream)
    cmd += ["-f", "s16le", "-acodec", "pcm_s16le", "-ar", str(SAMPLE_RATE), "-"]
    limit = None if max_duration_s is None else int(max_duration_s * SAMPLE_RATE) * _BYTES_PER_SAMPLE
    with tempfile.TemporaryFile(prefix="omoai-pcm-") as spool, tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        control.attach(proc)
        seen = 0
        too_long = False
        try:
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
            while chunk := os.read(fd, _READ):
                seen += len(chunk)
                if limit is not None and seen > limit:
                    too_long = True  # stop now: what follows may be hours of decoded silence
                    proc.kill()
                    break
                spool.write(chunk)
        finally:
            proc.stdout.close()  # type: ignore[union-attr]
            proc.wait()
            control.attach(None)
        control.check(timeout_s)
        if too_long:
            assert max_duration_s is not None
            raise AudioTooLongError(
                f"the audio is longer than the limit of {max_duration_s:.0f} s",
                details={"max_duration_s": max_duration_s},
            )
        if proc.returncode != 0:
            errors.seek(0, os.SEEK_END)
            errors.seek(max(0, errors.tell() - 4096))
            raise CorruptAudioError(f"the audio cannot be decoded: {_last_line(errors.read(), path)}")
        spool.seek(0)
        samples = np.fromfile(spool, dtype="<i2", count=seen // _BYTES_PER_SAMPLE).astype(np.int16, copy=False)
    if samples.size == 0:
        raise EmptyAudioError("the audio decodes to no samples (empty or truncated stream)")
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


def _last_line(stderr: bytes, path: Path | None = None) -> str:
    text = stderr.decode("utf-8", "replace")
    if path is not None:  # ffmpeg names its input; on a server that is a temporary path
        text = text.replace(str(path), "input")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown decoder error"
