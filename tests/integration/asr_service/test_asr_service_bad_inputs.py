"""A corpus of bad inputs, each answered with its 4xx, its stable code and a clear message in the
one error shape; afterwards the service still answers a valid request.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest
from conftest import AsrServer, MediaServer

pytestmark = pytest.mark.timeout(300)


def ff(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def corpus(media_dir: Path, clips: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("bad")
    mp3 = d / "speech.mp3"
    ff("-i", str(clips[1]), "-codec:a", "libmp3lame", "-b:a", "64k", str(mp3))
    video = d / "silent.mp4"
    ff("-f", "lavfi", "-i", "testsrc=duration=1:size=64x64:rate=10", "-an", "-pix_fmt", "yuv420p", str(video))
    long = d / "long.wav"
    subprocess.run(
        ["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(long), "synth", "70", "sine", "300"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    one_ms = d / "one_ms.wav"
    subprocess.run(
        ["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(one_ms), "synth", "0.001", "sine", "300"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    pcm = clips[0].read_bytes()[44:]
    absurd_fmt = (
        b"RIFF" + struct.pack("<I", 0xFFFFFFF0) + b"WAVE" + b"fmt " + struct.pack("<I", 0x7FFFFFF0) + pcm[:4000]
    )
    return {
        "zero_bytes": b"",
        "text_renamed_wav": b"Meeting notes, not audio.\n" * 20,
        "truncated_mp3": mp3.read_bytes()[:300],
        "absurd_header_lengths": absurd_fmt,
        "video_without_audio": video.read_bytes(),
        "one_ms": one_ms.read_bytes(),
        "over_max_duration": long.read_bytes(),  # 70 s; the server allows 60
    }


CASES = [
    ("zero_bytes", 422, "empty_audio", "empty"),
    ("text_renamed_wav", 422, None, "audio"),
    ("truncated_mp3", 422, None, "audio"),
    ("absurd_header_lengths", 422, None, "audio"),
    ("video_without_audio", 422, "not_audio", "no audio stream"),
    ("one_ms", 422, "audio_too_short", "ms"),
    ("over_max_duration", 422, "audio_too_long", "limit"),
]


def assert_error(r, status: int, code: str | None, needle: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "retryable", "details"}
    if code is not None:
        assert body["error"]["code"] == code
    assert needle.lower() in body["error"]["message"].lower()


@pytest.mark.parametrize("name, status, code, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_uploads_get_their_4xx(
    server: AsrServer, corpus: dict[str, bytes], name: str, status: int, code, needle: str
) -> None:
    with server.client() as http:
        r = http.post("/v1/transcriptions", files={"file": (f"{name}.wav", corpus[name])})
        assert_error(r, status, code, needle)
        r = http.post("/v1/audio/transcriptions", files={"file": (f"{name}.wav", corpus[name])}, data={"model": "m"})
        assert_error(r, status, code, needle)


def test_an_over_limit_upload_is_413(server: AsrServer) -> None:
    with server.client() as http:
        r = http.post("/v1/transcriptions", files={"file": ("big.wav", b"\0" * (4 * 1024 * 1024))})
    assert_error(r, 413, "payload_too_large", "limit")


@pytest.mark.parametrize(
    "url, status, code, needle",
    [
        ("http://127.0.0.1:9/a.wav", 403, "url_not_allowed", "loopback"),
        ("http://localhost:9/a.wav", 403, "url_not_allowed", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", 403, "url_not_allowed", "link-local"),
        ("file://../../etc/passwd", 403, "url_not_allowed", "outside"),
        ("file:///etc/passwd", 403, "url_not_allowed", "outside"),
        ("ftp://example.com/a.wav", 403, "url_not_allowed", "scheme"),
        ("file://nothing-here.wav", 404, "not_found", "no such file"),
    ],
)
def test_refused_audio_urls(server: AsrServer, url: str, status: int, code: str, needle: str) -> None:
    with server.client() as http:
        assert_error(http.post("/v1/transcriptions", json={"audio_url": url}), status, code, needle)


def test_a_redirect_to_loopback_is_refused(server: AsrServer, media_server: MediaServer) -> None:
    url = f"{media_server.url}/redirect?to=http://127.0.0.1:{server.url.rsplit(':', 1)[1]}/healthz"
    with server.client() as http:
        assert_error(http.post("/v1/transcriptions", json={"audio_url": url}), 403, "url_not_allowed", "127.0.0.1")


def test_url_errors_are_4xx(server: AsrServer, media_server: MediaServer, media_dir: Path) -> None:
    (media_dir / "big.bin").write_bytes(b"\0" * (4 * 1024 * 1024))
    with server.client() as http:
        r = http.post("/v1/transcriptions", json={"audio_url": f"{media_server.url}/missing.wav"})
        assert_error(r, 400, "url_fetch_failed", "404")
        r = http.post("/v1/transcriptions", json={"audio_url": f"{media_server.url}/big.bin"})
        assert_error(r, 413, "payload_too_large", "limit")


@pytest.mark.parametrize(
    "kwargs, status, code, needle",
    [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "invalid_input", "json"),
        ({"json": ["a"]}, 400, "invalid_input", "object"),
        ({"json": {"audio_url": "https://example.com/a.wav", "chunk_size": 0}}, 400, "invalid_input", "chunk_size"),
        ({"json": {"audio_url": "https://example.com/a.wav", "shoe_size": 42}}, 400, "invalid_input", "unknown field"),
        ({"data": {"format": "json"}, "files": {"other": b"x"}}, 400, "invalid_input", "file"),
        ({"content": b"x", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media", "content type"),
    ],
    ids=["bad_json", "json_not_object", "bad_option", "unknown_option", "no_file_field", "wrong_content_type"],
)
def test_malformed_requests_are_400(server: AsrServer, kwargs: dict, status: int, code: str, needle: str) -> None:
    with server.client() as http:
        assert_error(http.post("/v1/transcriptions", **kwargs), status, code, needle)


def test_unknown_routes_and_methods_use_the_same_error_shape(server: AsrServer) -> None:
    with server.client() as http:
        assert_error(http.get("/v1/nothing"), 404, "not_found", "not found")
        assert_error(http.get("/v1/transcriptions"), 405, "method_not_allowed", "not allowed")


def test_stereo_44k1_is_valid_audio_and_is_transcribed(server: AsrServer, clips: list[Path], tmp_path: Path) -> None:
    """Not an error: any ffmpeg-readable input is downmixed and resampled to 16 kHz mono."""
    stereo = tmp_path / "stereo.wav"
    ff("-i", str(clips[0]), "-ac", "2", "-ar", "44100", str(stereo))
    with server.client() as http:
        r = http.post("/v1/transcriptions", files={"file": ("stereo.wav", stereo.read_bytes())})
    assert r.status_code == 200 and r.json()["duration"] > 0.5


def test_the_service_still_works_after_the_corpus(server: AsrServer, clips: list[Path]) -> None:
    with server.client() as http:
        assert http.get("/healthz").status_code == 200 and http.get("/readyz").status_code == 200
        r = http.post("/v1/transcriptions", files={"file": clips[0].read_bytes()})
        assert r.status_code == 200 and r.json()["text"]
        metrics = http.get("/metrics").text
    assert 'omoai_asr_requests_total{outcome="error"} 0.0' in metrics  # nothing above was a 500
    assert server.process.poll() is None
