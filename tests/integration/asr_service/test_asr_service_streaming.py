"""Streamed file transcription (``stream=true``) against a real server on loopback.

``POST /v1/transcriptions`` answers server-sent events: ``progress`` after each decoded window,
``segment`` as each segment becomes final, then ``done`` with exactly the non-streamed answer.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import AsrServer, MediaServer
from prometheus_client.parser import text_string_to_metric_families

MANY_WINDOWS = {"chunk_size": "8", "left_context": "16", "right_context": "4", "total_batch_duration": "3"}


def long_clip(clips: list[Path], directory: Path, repeat: int = 2) -> Path:
    """The clips one after another, ``repeat`` times (several windows of the many-window setting)."""
    parts = []
    for clip in clips:
        with wave.open(str(clip), "rb") as w:
            parts.append(np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16))
    samples = np.concatenate(parts * repeat)
    path = directory / "long.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(samples.tobytes())
    return path


def parse_events(text: str) -> list[tuple[str, object]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_stream_true_sends_progress_and_segments_then_the_same_transcript(
    server: AsrServer, clips: list[Path], tmp_path: Path
) -> None:
    clip = long_clip(clips, tmp_path)
    with server.client() as http:
        plain = http.post("/v1/transcriptions", data=MANY_WINDOWS, files={"file": clip.read_bytes()})
        assert plain.status_code == 200, plain.text
        with http.stream(
            "POST",
            "/v1/transcriptions",
            data={**MANY_WINDOWS, "stream": "true"},
            files={"file": clip.read_bytes()},
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            body = r.read().decode()
    events = parse_events(body)
    names = [name for name, _ in events]
    assert names[-1] == "done" and names.count("done") == 1
    done = events[-1][1]
    assert done == plain.json()
    assert [data for name, data in events if name == "segment"] == done["segments"]  # type: ignore[index]
    progress = [data for name, data in events if name == "progress"]
    done_s = [p["audio_seconds_done"] for p in progress]  # type: ignore[index]
    assert len(progress) >= 3 and done_s == sorted(done_s)
    assert progress[0]["audio_seconds_done"] < 0.5 * progress[0]["audio_seconds_total"]  # type: ignore[index]
    # The first text arrives after the first windows, not at the end.
    first_segment = names.index("segment") if "segment" in names else len(names)
    assert first_segment < names.index("done") - 1


def scraped(http: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one ``/metrics`` scrape: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(http.get("/metrics").text)
        for sample in family.samples
    }


def test_a_streamed_request_records_the_same_metrics_as_a_plain_one(
    server: AsrServer, clips: list[Path], tmp_path: Path
) -> None:
    """Engine time, batch size, audio seconds and the request's audio duration, as the batcher records
    them for a plain request: the real-time factor and the dashboard see streamed work too."""
    clip = long_clip(clips, tmp_path)
    with wave.open(str(clip), "rb") as w:
        seconds = w.getnframes() / 16000
    with server.client() as http:
        model = http.get("/v1/models").json()["data"][0]["id"]
        engine_calls = ("omoai_inference_duration_seconds_count", (("model", model), ("task", "transcribe")))
        audio = ("omoai_asr_audio_seconds_total", (("model", model),))
        before = scraped(http)
        r = http.post("/v1/transcriptions", data={**MANY_WINDOWS, "stream": "true"}, files={"file": clip.read_bytes()})
        assert r.status_code == 200 and parse_events(r.text)[-1][0] == "done"
        after = scraped(http)

    def grew(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
        return after[(name, labels)] - before.get((name, labels), 0.0)

    steps = grew(*engine_calls)
    assert steps >= 3  # several windows: several engine calls
    assert grew("omoai_asr_batch_size_count") == steps and grew("omoai_asr_batch_size_sum") == steps  # one stream
    assert grew(*audio) == pytest.approx(seconds, abs=1e-3)  # every second decoded, counted once
    assert grew("omoai_asr_request_audio_seconds_count") == 1
    assert grew("omoai_asr_request_audio_seconds_sum") == pytest.approx(seconds, abs=1e-3)


def test_stream_true_refuses_formats_it_cannot_stream(server: AsrServer, clips: list[Path]) -> None:
    with server.client() as http:
        r = http.post(
            "/v1/transcriptions", data={"stream": "true", "format": "srt"}, files={"file": clips[0].read_bytes()}
        )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_input"


def test_stream_json_field_streams_an_audio_url(server: AsrServer, media_server: MediaServer) -> None:
    url = f"file://{media_server.root / 'clip1.wav'}"
    with server.client() as http:
        plain = http.post("/v1/transcriptions", json={"audio_url": url})
        streamed = http.post("/v1/transcriptions", json={"audio_url": url, "stream": True})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = parse_events(streamed.text)
    assert events[-1] == ("done", plain.json())


def test_the_openai_client_streams_deltas_then_done(server: AsrServer, engine, clips: list[Path]) -> None:
    """``stream=True`` with the official SDK: text deltas, then the done event with usage."""
    import openai
    from omoai_asr.engine import DecodeOptions
    from omoai_audio import decode_audio

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    want = engine.transcribe(decode_audio(clips[1]).samples, DecodeOptions())
    with clips[1].open("rb") as fh:
        stream = client.audio.transcriptions.create(model="chunkformer-tiny", file=fh, stream=True)
        events = list(stream)
    assert [e.type for e in events][-1] == "transcript.text.done"
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    done = events[-1]
    assert "".join(deltas) == done.text == want.text and want.text
    assert done.usage is not None and done.usage.seconds == pytest.approx(int(want.duration) + 1)
    with clips[1].open("rb") as fh, pytest.raises(openai.BadRequestError):
        client.audio.transcriptions.create(
            model="chunkformer-tiny", file=fh, stream=True, response_format="verbose_json"
        )
