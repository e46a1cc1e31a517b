"""Decompression bombs and oversized inputs are refused with their 4xx while the ASR server's peak
RSS grows by less than 150 MiB and ``/healthz`` answers in under 0.5 s throughout; a 64-channel
WAV is downmixed and transcribed, not refused.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.security.harness import AUTH, TOKEN, HealthSampler, MiB, Server, asr_server, read_response, status_of

pytestmark = pytest.mark.timeout(600)

RSS_BUDGET = 150 * MiB
HEALTHZ_BUDGET_S = 0.5


@pytest.fixture(scope="module")
def server(asr_model: Path, media: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with asr_server(
        asr_model,
        tmp_path_factory.mktemp("bombs"),
        OMOAI_MAX_AUDIO_DURATION_S="1800",
        OMOAI_MAX_REQUEST_BYTES=str(8 * MiB),
        OMOAI_MAX_CONCURRENCY="4",
        OMOAI_MAX_QUEUE="16",
        OMOAI_FILE_ROOT=str(media),
    ) as s:
        yield s


def _raw_refusal(server: Server, head: bytes, body: bytes = b"") -> int:
    with server.connect() as sock:
        sock.sendall(head + body)
        return status_of(read_response(sock, 30))


def test_bombs_and_oversized_inputs_are_refused_within_the_memory_and_health_budgets(server: Server, media: Path):
    bomb = (media / "bomb.flac").read_bytes()
    with server.client() as http:
        warm = http.post(
            "/v1/transcriptions", files={"file": (media / "speech.wav").read_bytes()}, data={"format": "txt"}
        )
        assert warm.status_code == 200, warm.text
    baseline = server.peak_rss()
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=TOKEN, max_retries=0, timeout=120)

    with HealthSampler(server.url) as health, server.client() as http:
        # Four bombs at once through our API, one through the openai SDK, one raw, one by file://.
        def multipart(_: int):
            return http.post("/v1/transcriptions", files={"file": ("bomb.flac", bomb)})

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(multipart, range(4)))
        for r in answers:
            assert r.status_code == 422 and r.json()["error"]["code"] == "audio_too_long", r.text
        with pytest.raises(openai.UnprocessableEntityError) as err:
            sdk.audio.transcriptions.create(model="any", file=("bomb.flac", bomb))
        assert err.value.body["code"] == "audio_too_long"  # the SDK unwraps {"error": ...}
        raw = http.post("/v1/transcriptions", content=bomb, headers={"content-type": "audio/flac"})
        assert raw.status_code == 422 and raw.json()["error"]["code"] == "audio_too_long"
        by_file = http.post("/v1/transcriptions", json={"audio_url": "file://bomb.flac"})
        assert by_file.status_code == 422 and by_file.json()["error"]["code"] == "audio_too_long"

        # Oversized bodies: declared (refused before the body is sent) and streamed (chunked).
        declared = (
            b"POST /v1/transcriptions HTTP/1.1\r\nhost: x\r\ncontent-type: audio/wav\r\n"
            b"authorization: Bearer " + TOKEN.encode() + b"\r\ncontent-length: " + str(200 * MiB).encode() + b"\r\n\r\n"
        )
        assert _raw_refusal(server, declared) == 413

        def chunks() -> Iterator[bytes]:
            block = b"\0" * MiB
            for _ in range(64):
                yield block

        streamed = http.post("/v1/transcriptions", content=chunks(), headers={"content-type": "audio/wav"})
        assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "payload_too_large"
        with pytest.raises(openai.APIStatusError) as too_big:
            sdk.audio.transcriptions.create(model="any", file=("big.wav", b"\0" * (20 * MiB)))
        assert too_big.value.status_code == 413
        big_json = http.post(
            "/v1/transcriptions",
            content=b'{"audio_url": "' + b"a" * (5 * MiB) + b'"}',
            headers={"content-type": "application/json"},
        )
        assert big_json.status_code == 413  # a JSON request carries a URL, never megabytes
        deep = http.post(
            "/v1/transcriptions", content=b"[" * 5000 + b"]" * 5000, headers={"content-type": "application/json"}
        )
        assert deep.status_code == 400

    growth = server.peak_rss() - baseline
    print(
        f"peak RSS growth {growth / MiB:.1f} MiB; worst /healthz {health.worst * 1000:.0f} ms over {len(health.latencies)} probes"
    )
    assert not health.failures, health.failures
    assert growth < RSS_BUDGET, f"peak RSS grew by {growth / MiB:.0f} MiB"
    assert health.worst < HEALTHZ_BUDGET_S, f"/healthz took {health.worst:.2f} s"
    with server.client() as http:
        ok = http.post("/v1/transcriptions", files={"file": (media / "speech.wav").read_bytes()})
        assert ok.status_code == 200  # nothing leaked a slot


def test_a_64_channel_wav_is_downmixed_and_transcribed(server: Server, media: Path):
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=TOKEN, max_retries=0, timeout=120)
    result = sdk.audio.transcriptions.create(
        model="any", file=("ch64.wav", (media / "ch64.wav").read_bytes()), response_format="verbose_json"
    )
    assert result.duration == pytest.approx(2.0, abs=0.05)


def test_error_messages_name_no_server_paths(server: Server, media: Path):
    with server.client() as http:
        corrupt = http.post("/v1/transcriptions", files={"file": ("x.mp3", b"ID3" + b"\xff\xfb" * 4000)})
        empty = http.post("/v1/transcriptions", files={"file": ("x.wav", b"")})
        missing = http.post("/v1/transcriptions", json={"audio_url": "file://nope/missing.wav"})
        outside = http.post("/v1/transcriptions", json={"audio_url": "file:///etc/passwd"})
    for r in (corrupt, empty, missing, outside):
        assert 400 <= r.status_code < 500, r.text
        text = json.dumps(r.json())
        assert "/tmp" not in text and "omoai-upload" not in text and str(media) not in text, text
    assert AUTH  # the shared header is what server.client() sends
