"""Small, fast checks of the pieces the servers rely on: URL redaction (text and log records),
finite-only JSON parsing, the auth middleware's order (before the body), the streaming decoder's
early stop and its cancellation."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time
from pathlib import Path

import pytest
from omoai_audio import decode_audio, decode_audio_async
from omoai_core.errors import AudioTooLongError, InvalidInputError
from omoai_core.redact import RedactingFilter, redact_text, redact_url
from omoai_http.jsonbody import parse_json

SECRET_URLS = [
    ("https://alice:hunter2@store.example/a.wav", ["hunter2", "alice"]),
    ("http://user@host/a.wav", ["user@"]),
    (
        "https://b.s3.amazonaws.com/k.m4a?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA123&X-Amz-Signature=abc123",
        ["AKIA123", "abc123"],
    ),
    ("https://h/a.wav?token=T0K&sig=S1G&api_key=K3Y&access_token=A7", ["T0K", "S1G", "K3Y", "A7"]),
    ("https://h/a.wav?x-goog-signature=G00G&client_secret=CS", ["G00G", "CS"]),
    ("s3://key:secret@bucket/key", ["secret"]),
]


@pytest.mark.parametrize(("url", "secrets"), SECRET_URLS)
def test_redact_url_removes_credentials_and_secret_query_values(url: str, secrets: list[str]):
    clean = redact_url(url)
    for secret in secrets:
        assert secret not in clean, clean
    assert "REDACTED" in clean


def test_redaction_keeps_harmless_parts():
    assert redact_url("https://h/a.wav?format=srt&chunk_size=64") == "https://h/a.wav?format=srt&chunk_size=64"
    assert redact_text("mail me at a@b.example") == "mail me at a@b.example"


def test_the_log_filter_rewrites_messages_arguments_and_tracebacks(caplog: pytest.LogCaptureFixture):
    logger = logging.getLogger("test.redaction")
    logger.addFilter(RedactingFilter())
    try:
        with caplog.at_level(logging.INFO, logger="test.redaction"):
            logger.info('HTTP Request: GET %s "HTTP/1.1 200 OK"', "https://u:PW@h/x?X-Amz-Signature=SIG")
            try:
                raise ValueError("cannot fetch https://u:PW2@h/x?token=TOK")
            except ValueError:
                logger.exception("failed")
        text = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
        for secret in ("PW", "SIG", "PW2", "TOK"):
            assert f":{secret}@" not in text and f"={secret}" not in text
    finally:
        logger.filters.clear()


@pytest.mark.parametrize(
    "body",
    [
        b"NaN",
        b"[Infinity]",
        b'{"a": -Infinity}',
        b"1e309",
        b"-1e309",
        b"[" * 5000 + b"]" * 5000,
        b"1" * 5000,
        b"\xff",
        b"{",
        b"",
    ],
)
def test_parse_json_refuses_with_a_400(body: bytes):
    with pytest.raises(InvalidInputError) as err:
        parse_json(body)
    assert err.value.http_status == 400


def test_parse_json_accepts_plain_json():
    assert parse_json(b'{"a": [1, 2.5, -3e10, "x", null, true]}') == {"a": [1, 2.5, -3e10, "x", None, True]}


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "hour.flac"
    with path.open("wb") as fh:  # one hour of silence, no declared duration
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "anullsrc=r=16000:cl=mono",
                "-t",
                "3600",
                "-c:a",
                "flac",
                "-f",
                "flac",
                "-",
            ],
            check=True,
            stdout=fh,
            timeout=120,
        )
    return path


def test_decoding_stops_as_soon_as_the_limit_is_passed(bomb: Path):
    started = time.monotonic()
    with pytest.raises(AudioTooLongError, match="longer than the limit of 10 s"):
        decode_audio(bomb, max_duration_s=10)
    assert time.monotonic() - started < 5  # an hour of decoding would take far longer


def test_a_cancelled_async_decode_kills_ffmpeg_before_returning(bomb: Path):
    async def main() -> float:
        task = asyncio.ensure_future(decode_audio_async(bomb, max_duration_s=7200))
        await asyncio.sleep(0.3)
        task.cancel()
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    assert asyncio.run(main()) < 3
    ps = subprocess.run(["ps", "-o", "args=", "--ppid", str(os.getpid())], capture_output=True, text=True, check=False)
    assert str(bomb) not in ps.stdout  # no ffmpeg of ours is left decoding it
