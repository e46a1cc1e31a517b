"""Audio decoding: any ffmpeg-readable input to 16 kHz mono int16, and clear errors for bad input."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from omoai_audio import SAMPLE_RATE, decode_audio
from omoai_core.errors import AudioTooLongError, CorruptAudioError, EmptyAudioError, NotAudioError

SAMPLE = Path(__file__).parents[3] / "samples" / "xin-chao.wav"
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def test_plain_wav_is_read_exactly():
    with wave.open(str(SAMPLE)) as w:
        expected = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    audio = decode_audio(SAMPLE)
    assert audio.samples.dtype == np.int16
    np.testing.assert_array_equal(audio.samples, expected)
    assert audio.duration == pytest.approx(len(expected) / SAMPLE_RATE)


def test_bytes_and_path_give_the_same_samples():
    np.testing.assert_array_equal(decode_audio(SAMPLE.read_bytes()).samples, decode_audio(SAMPLE).samples)


@needs_ffmpeg
def test_stereo_44k_mp3_is_downmixed_and_resampled(tmp_path):
    mp3 = tmp_path / "stereo.mp3"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=2", "-ac", "2", str(mp3))
    audio = decode_audio(mp3)
    assert audio.sample_rate == SAMPLE_RATE
    assert audio.duration == pytest.approx(2.0, abs=0.1)
    assert np.abs(audio.samples).max() > 1000


def test_zero_bytes_is_empty_audio(tmp_path):
    with pytest.raises(EmptyAudioError, match="empty"):
        decode_audio(b"")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(EmptyAudioError, match="empty"):
        decode_audio(empty)


@needs_ffmpeg
def test_text_renamed_wav_is_not_audio(tmp_path):
    fake = tmp_path / "notes.wav"
    fake.write_text("these are meeting notes, not a recording\n" * 20)
    with pytest.raises((CorruptAudioError, NotAudioError)) as err:
        decode_audio(fake)
    assert err.value.http_status == 422


@needs_ffmpeg
def test_image_without_audio_stream_is_not_audio(tmp_path):
    png = tmp_path / "picture.png"
    _ffmpeg("-f", "lavfi", "-i", "color=c=red:s=16x16", "-frames:v", "1", str(png))
    with pytest.raises(NotAudioError, match="no audio stream"):
        decode_audio(png)


@needs_ffmpeg
def test_too_long_audio_is_refused_with_the_limit_in_the_message(tmp_path):
    long = tmp_path / "long.flac"
    _ffmpeg("-f", "lavfi", "-i", "anoisesrc=d=5:r=16000", str(long))
    with pytest.raises(AudioTooLongError, match="limit is 3 s"):
        decode_audio(long, max_duration_s=3)
    assert decode_audio(long, max_duration_s=10).duration == pytest.approx(5.0, abs=0.05)


def test_too_long_plain_wav_is_refused_without_reading_it():
    with pytest.raises(AudioTooLongError):
        decode_audio(SAMPLE, max_duration_s=1)


@needs_ffmpeg
def test_wav_header_with_absurd_length_still_decodes_what_is_there():
    data = bytearray(SAMPLE.read_bytes())
    data[40:44] = (0x7FFFFFF0).to_bytes(4, "little")  # data chunk claims ~2 GB
    audio = decode_audio(bytes(data))
    assert 6.5 < audio.duration < 7.5


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(EmptyAudioError, match="no such audio file"):
        decode_audio(tmp_path / "nope.wav")
