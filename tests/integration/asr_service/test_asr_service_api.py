"""The ASR service over real HTTP: the official ``openai`` client, our own API in every input and
output form, probes and authentication. Answers must equal the engine's in this process.
"""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from conftest import AsrServer, MediaServer, asr_server
from omoai_asr.engine import DecodeOptions
from omoai_audio import decode_audio
from omoai_formats import render

pytestmark = pytest.mark.timeout(300)


DEFAULT = DecodeOptions()


def expected(engine, clip: Path, options: DecodeOptions = DEFAULT):
    return engine.transcribe(decode_audio(clip).samples, options).model_copy(update={"model": "chunkformer-tiny"})


def test_the_openai_client_transcribes_like_the_engine(server: AsrServer, engine, clips: list[Path]) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    want = expected(engine, clips[1])
    with clips[1].open("rb") as fh:
        plain = client.audio.transcriptions.create(model="chunkformer-tiny", file=fh)
    assert plain.text == want.text and want.text.strip()
    with clips[1].open("rb") as fh:
        verbose = client.audio.transcriptions.create(
            model="chunkformer-tiny",
            file=fh,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
            language="vi",
        )
    assert verbose.text == want.text and verbose.language == "vi"
    assert verbose.duration == pytest.approx(want.duration)
    assert [(s.start, s.end, s.text) for s in verbose.segments] == [(s.start, s.end, s.text) for s in want.segments]
    assert [(w.word, w.start, w.end) for w in verbose.words] == [
        (w.word, w.start, w.end) for s in want.segments for w in s.words
    ]
    with clips[1].open("rb") as fh:
        srt = client.audio.transcriptions.create(model="chunkformer-tiny", file=fh, response_format="srt")
    assert srt == render(want, "srt")
    with clips[1].open("rb") as fh:
        text = client.audio.transcriptions.create(model="chunkformer-tiny", file=fh, response_format="text")
    assert text.strip() == want.text
    assert [m.id for m in client.models.list().data] == ["chunkformer-tiny"]


def test_openai_errors_reach_the_client_as_4xx(server: AsrServer, clips: list[Path]) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with clips[0].open("rb") as fh, pytest.raises(openai.BadRequestError) as e:
        client.audio.transcriptions.create(model="m", file=fh, response_format="text", timestamp_granularities=["word"])
    assert "verbose_json" in str(e.value)
    with pytest.raises(openai.UnprocessableEntityError):
        client.audio.transcriptions.create(model="m", file=("x.wav", b"not audio at all"))


def test_multipart_upload_returns_the_engine_transcript(server: AsrServer, engine, clips: list[Path]) -> None:
    with server.client() as http:
        r = http.post("/v1/transcriptions", files={"file": clips[2].read_bytes()})
    assert r.status_code == 200, r.text
    assert r.json() == expected(engine, clips[2]).model_dump(exclude_none=True)


def test_decode_options_and_formats_are_applied(server: AsrServer, engine, clips: list[Path]) -> None:
    options = DecodeOptions(chunk_size=32, left_context=64, right_context=32, include_frames=True)
    with server.client() as http:
        r = http.post(
            "/v1/transcriptions",
            files={"file": clips[0].read_bytes()},
            data={"chunk_size": "32", "left_context": "64", "right_context": "32", "include_frames": "true"},
        )
        assert r.status_code == 200, r.text
        assert r.json() == expected(engine, clips[0], options).model_dump(exclude_none=True)
        for fmt, ctype in [
            ("txt", "text/plain"),
            ("srt", "application/x-subrip"),
            ("vtt", "text/vtt"),
            ("md", "text/markdown"),
        ]:
            r = http.post("/v1/transcriptions", files={"file": clips[0].read_bytes()}, data={"format": fmt})
            assert r.status_code == 200 and r.headers["content-type"].startswith(ctype)
            assert r.text == render(expected(engine, clips[0]), fmt)


def test_raw_audio_body_with_query_options(server: AsrServer, engine, clips: list[Path]) -> None:
    with server.client() as http:
        r = http.post(
            "/v1/transcriptions?format=txt", content=clips[3].read_bytes(), headers={"content-type": "audio/wav"}
        )
    assert r.status_code == 200 and r.text == render(expected(engine, clips[3]), "txt")


def test_audio_url_over_http_and_file_root(
    server: AsrServer, media_server: MediaServer, engine, clips: list[Path]
) -> None:
    want = expected(engine, clips[1]).model_dump(exclude_none=True)
    with server.client() as http:
        r = http.post("/v1/transcriptions", json={"audio_url": f"{media_server.url}/clip1.wav"})
        assert r.status_code == 200, r.text
        assert r.json() == want
        r = http.post("/v1/transcriptions", json={"audio_url": f"{media_server.url}/redirect?to=/clip1.wav"})
        assert r.status_code == 200 and r.json() == want
        r = http.post("/v1/transcriptions", json={"audio_url": "file://clip1.wav", "format": "json"})
        assert r.status_code == 200 and r.json() == want


def test_probes_and_metrics_are_open_and_the_api_needs_the_token(
    tiny_model: Path, tmp_path: Path, clips: list[Path]
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token-0123456789\n")
    with asr_server(tiny_model, tmp_path, OMOAI_API_TOKEN_FILE=str(token_file)) as s, s.client() as http:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert http.get(path).status_code == 200
        r = http.post("/v1/transcriptions", files={"file": clips[0].read_bytes()})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
        r = http.get("/v1/models", headers={"authorization": "Bearer wrong-token-0123456789"})
        assert r.status_code == 401
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="s3cret-token-0123456789", max_retries=0)
        with clips[0].open("rb") as fh:
            assert client.audio.transcriptions.create(model="tiny-asr", file=fh).text is not None
        assert json.loads(http.get("/healthz").text) == {"status": "ok"}
