"""Behaviour under load: simultaneous requests are answered correctly in shared batches, a full
queue answers 429 with Retry-After, and the service stays healthy.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from conftest import AsrServer, asr_server
from omoai_asr.engine.testing import synthetic_speech

pytestmark = pytest.mark.timeout(300)


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert m, f"{name} not in the scrape"
    return float(m.group(1))


async def test_simultaneous_requests_are_all_answered_correctly_in_shared_batches(
    server: AsrServer, engine, clips: list[Path]
) -> None:
    from omoai_audio import decode_audio

    wanted = [engine.transcribe(decode_audio(c).samples).text for c in clips]
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        before = (await http.get("/metrics")).text
        jobs = [(i % len(clips)) for i in range(16)]
        responses = await asyncio.gather(
            *(http.post("/v1/transcriptions", files={"file": clips[j].read_bytes()}) for j in jobs)
        )
        after = (await http.get("/metrics")).text
    assert [r.status_code for r in responses] == [200] * 16
    assert [r.json()["text"] for r in responses] == [wanted[j] for j in jobs]
    batches = metric(after, "omoai_asr_batch_size_count") - metric(before, "omoai_asr_batch_size_count")
    requests = metric(after, "omoai_asr_batch_size_sum") - metric(before, "omoai_asr_batch_size_sum")
    assert requests == 16 and batches < 16, "no two requests shared a batch"


async def test_a_full_queue_answers_429_with_retry_after_and_the_service_stays_healthy(
    tiny_model: Path, tmp_path: Path, clips: list[Path]
) -> None:
    import wave

    long = tmp_path / "long.wav"  # long enough that the first requests are still running
    with wave.open(str(long), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(synthetic_speech(120.0, seed=3).tobytes())
    body = long.read_bytes()
    with asr_server(
        tiny_model, tmp_path, OMOAI_MAX_CONCURRENCY="1", OMOAI_MAX_QUEUE="2", OMOAI_MAX_BATCH_SIZE="1"
    ) as s:
        async with httpx.AsyncClient(base_url=s.url, timeout=300) as http:
            responses = await asyncio.gather(
                *(http.post("/v1/transcriptions", files={"file": body}, data={"format": "txt"}) for _ in range(12))
            )
            codes = sorted(r.status_code for r in responses)
            assert set(codes) == {200, 429}, codes
            assert 1 <= codes.count(200) <= 6
            refused = next(r for r in responses if r.status_code == 429)
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["error"]["code"] == "overloaded" and refused.json()["error"]["retryable"] is True
            assert (await http.get("/healthz")).status_code == 200
            r = await http.post("/v1/transcriptions", files={"file": clips[0].read_bytes()})
            assert r.status_code == 200
            scrape = (await http.get("/metrics")).text
        assert metric(scrape, 'omoai_asr_requests_total{outcome="overloaded"}') == codes.count(429)
        assert metric(scrape, "omoai_asr_queue_depth") == 0 and metric(scrape, "omoai_asr_requests_in_flight") == 0
