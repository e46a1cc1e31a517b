"""Service clients: the wire shapes the ASR and LLM services speak, and every outcome mapped onto
retryable or permanent (the HTTP transport is the seam)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from omoai_core.contracts.asr import TranscriptionOptions
from omoai_core.schemas import Segment
from omoai_operator.clients import AsrClient, LlmClient, ServiceClient, StageError
from omoai_operator.placement import EndpointAddress, EndpointPool, Grant

NO_OPTIONS = TranscriptionOptions()
TRANSCRIPT = {
    "text": "xin chào",
    "duration": 1.5,
    "model": "m",
    "segments": [{"text": "xin chào", "start": 0.0, "end": 1.5, "words": []}],
}


def client(handler, svc: str = "ASR") -> ServiceClient:
    return ServiceClient(svc, "http://svc.test", token="t" * 20, transport=httpx.MockTransport(handler))


async def test_asr_request_carries_the_url_and_decode_options_the_service_accepts() -> None:
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["body"] = json.loads(request.content)
        seen["auth"] = request.headers["authorization"]
        seen["path"] = request.url.path
        return httpx.Response(200, json=TRANSCRIPT)

    t = await AsrClient(client(handler)).transcribe(
        "https://a/x.wav", TranscriptionOptions(chunk_size=64, word_timestamps=True)
    )
    assert t.text == "xin chào" and t.duration == 1.5
    assert seen["path"] == "/v1/transcriptions" and seen["auth"] == "Bearer " + "t" * 20
    assert seen["body"] == {"audio_url": "https://a/x.wav", "format": "json", "chunk_size": 64, "word_timestamps": True}


async def test_asr_upload_sends_the_file_as_multipart(tmp_path: Path) -> None:
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF....")
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["ctype"] = request.headers["content-type"]
        seen["body"] = request.content
        return httpx.Response(200, json=TRANSCRIPT)

    await AsrClient(client(handler)).transcribe_file(audio, TranscriptionOptions(chunk_size=32, word_timestamps=False))
    assert seen["ctype"].startswith("multipart/form-data")
    assert b'name="file"; filename="a.wav"' in seen["body"] and b"RIFF...." in seen["body"]
    assert b'name="word_timestamps"\r\n\r\nfalse' in seen["body"]


async def test_missing_local_audio_is_a_permanent_error(tmp_path: Path) -> None:
    with pytest.raises(StageError) as e:
        await AsrClient(client(lambda r: httpx.Response(200))).transcribe_file(tmp_path / "nope.wav", NO_OPTIONS)
    assert not e.value.failure.retryable and e.value.failure.reason == "AudioNotFound"


@pytest.mark.parametrize(
    ("status", "body", "retryable", "reason"),
    [
        (429, {"error": {"code": "overloaded", "message": "busy"}}, True, "ServiceOverloaded"),
        (500, {"error": {"code": "internal_error", "message": "boom"}}, True, "ServiceError"),
        # the body's retryable flag decides over the status code
        (500, {"error": {"code": "internal_error", "message": "bug", "retryable": False}}, False, "ServiceError"),
        (503, {"error": {"code": "unavailable", "message": "oom", "retryable": True}}, True, "ServiceUnavailable"),
        (409, {"error": {"code": "busy", "message": "later", "retryable": True}}, True, "Rejected"),
        (422, {"error": {"code": "audio_too_short", "message": "0.1 s", "retryable": False}}, False, "InvalidAudio"),
        (502, {"error": {"code": "upstream_error", "message": "bad gateway"}}, True, "ServiceUnavailable"),
        (503, {"error": {"code": "unavailable", "message": "loading"}}, True, "ServiceUnavailable"),
        (504, {"error": {"code": "timeout", "message": "slow"}}, True, "ServiceUnavailable"),
        (400, {"error": {"code": "invalid_input", "message": "chunk_size too big"}}, False, "InvalidRequest"),
        (401, {"error": {"code": "unauthorized", "message": "token"}}, False, "Unauthorized"),
        (413, {"error": {"code": "payload_too_large", "message": "big"}}, False, "AudioTooLarge"),
        (422, {"error": {"code": "not_audio", "message": "this is text"}}, False, "InvalidAudio"),
        (422, {"detail": [{"msg": "field required"}]}, False, "InvalidAudio"),
        (404, "plain text", False, "NotFound"),
    ],
)
async def test_http_errors_are_classified_as_retryable_or_permanent(
    status: int, body: object, retryable: bool, reason: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers={"retry-after": "7"})
        return httpx.Response(status, json=body, headers={"retry-after": "7"})

    with pytest.raises(StageError) as e:
        await AsrClient(client(handler)).transcribe("https://a/x.wav", NO_OPTIONS)
    f = e.value.failure
    assert (f.retryable, f.reason) == (retryable, reason)
    assert f"/v1/transcriptions answered {status}" in f.message
    if status == 429:
        assert f.retry_after_s == 7


async def test_connection_errors_and_timeouts_are_retryable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    for handler, reason in ((refuse, "ServiceUnavailable"), (slow, "Timeout")):
        with pytest.raises(StageError) as e:
            await AsrClient(client(handler)).transcribe("https://a/x.wav", NO_OPTIONS)
        assert e.value.failure.retryable and e.value.failure.reason == reason


async def test_an_answer_of_the_wrong_shape_is_a_permanent_protocol_error() -> None:
    with pytest.raises(StageError) as e:
        await AsrClient(client(lambda r: httpx.Response(200, json={"text": "x"}))).transcribe("https://a", NO_OPTIONS)
    assert e.value.failure.reason == "UpstreamProtocolError" and not e.value.failure.retryable
    with pytest.raises(StageError) as e:
        await AsrClient(client(lambda r: httpx.Response(200, text="<html>"))).transcribe("https://a", NO_OPTIONS)
    assert e.value.failure.reason == "UpstreamProtocolError"


async def test_llm_requests_match_the_llm_service_protocol() -> None:
    bodies: dict[str, dict] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies[request.url.path] = body
        if request.url.path == "/v1/punctuate":
            return httpx.Response(
                200,
                json={
                    "segments": [{"text": "Xin chào.", "start": 0.0, "end": 1.5, "words": []}],
                    "text": "Xin chào.",
                    "quality": {"wer": 0.0, "cer": 0.0, "words_in": 2, "words_out": 2, "fallback_segments": 0},
                    "alignment": {},
                    "chunks": 1,
                    "usage": {},
                },
            )
        if request.url.path == "/v1/summarize":
            return httpx.Response(
                200,
                json={
                    "summary": {"title": "T", "abstract": "A", "bullets": ["b"]},
                    "strategy": "single",
                    "chunks": 1,
                    "structured": True,
                    "usage": {},
                },
            )
        return httpx.Response(200, json={"topics": [{"title": "Chào", "start": 0.0, "end": 1.5}], "chunks": 1})

    llm = LlmClient(client(handler, "LLM"))
    segs = [Segment(text="xin chào", start=0.0, end=1.5)]
    out, quality = await llm.punctuate(segs, "vi")
    summary = await llm.summarize(out, "vi", "abstract")
    topics = await llm.topics(out, "vi")
    assert out[0].text == "Xin chào." and quality is not None and quality.words_out == 2
    assert summary.title == "T" and summary.bullets == []  # abstract mode keeps no bullets
    assert topics[0].title == "Chào"
    assert bodies["/v1/punctuate"] == {"segments": [{"text": "xin chào", "start": 0.0, "end": 1.5}], "language": "vi"}
    assert bodies["/v1/summarize"] == {"segments": [{"text": "Xin chào.", "start": 0.0, "end": 1.5}], "language": "vi"}
    assert set(bodies["/v1/topics"]) == {"segments", "language"}
    await llm.punctuate(segs, "vi", "tagger")
    assert bodies["/v1/punctuate"]["method"] == "tagger"  # named only when the job names it


async def test_a_stage_calls_the_endpoint_its_grant_placed_it_on_and_a_refusal_sets_it_aside() -> None:
    pool = EndpointPool("asr")
    pool.update(
        [EndpointAddress("http://10.0.0.1:8000"), EndpointAddress("http://10.0.0.2:8000")],
        {"http://10.0.0.1:8000": 1, "http://10.0.0.2:8000": 1},
        origin="endpointslices",
    )
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "10.0.0.2":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json=TRANSCRIPT)

    asr = AsrClient(client(handler))
    await asr.transcribe("https://a/x.wav", NO_OPTIONS, at=Grant("asr", "http://10.0.0.1:8000", pool))
    with pytest.raises(StageError) as e:
        await asr.transcribe("https://a/x.wav", NO_OPTIONS, at=Grant("asr", "http://10.0.0.2:8000", pool))
    assert e.value.failure.retryable and "10.0.0.2" in str(e.value)
    await asr.transcribe("https://a/x.wav", NO_OPTIONS)  # no grant: the Service URL
    assert hosts == ["10.0.0.1", "10.0.0.2", "svc.test"]
    assert pool.open_slots() == 1  # the refusing endpoint takes nothing new for a while
    # A grant of another service is not this client's to follow.
    await asr.transcribe("https://a/x.wav", NO_OPTIONS, at=Grant("llm", "http://10.0.0.1:8000", pool))
    assert hosts[-1] == "svc.test"
