"""The service's diarization seam with fakes at both seams (engine, diarization backend): options
reach the backend, ASR and diarization run side by side, speakers land on words, a server without
a backend answers 501, and the metrics count each diarized recording."""

from __future__ import annotations

import asyncio
import io
import threading
import wave
from collections.abc import Sequence

import httpx
import numpy as np
from omoai_asr.app import create_app
from omoai_asr.diarization.types import Diarization, DiarizationOptions, SpeakerTurn
from omoai_asr.settings import AsrSettings
from omoai_core.schemas import Segment, Transcript, Word
from omoai_core.settings import load_settings
from prometheus_client import CollectorRegistry


class WordsEngine:
    """Two words per second of audio, one segment; records the options it got."""

    name = "fake"

    def __init__(self) -> None:
        self.options = []

    def _one(self, samples: np.ndarray, options) -> Transcript:
        self.options.append(options)
        n = int(len(samples) / 16000 * 2)
        words = (
            [Word(word=f"w{i}", start=i * 0.5, end=i * 0.5 + 0.4) for i in range(n)] if options.word_timestamps else []
        )
        seg = Segment(text=" ".join(f"w{i}" for i in range(n)), start=0.0, end=n * 0.5, words=words)
        return Transcript(text=seg.text, segments=[seg], duration=len(samples) / 16000, model="fake")

    def transcribe_batch(self, batch: Sequence[np.ndarray], options) -> list[Transcript]:
        return [self._one(s, options) for s in batch]

    def transcribe(self, samples, options, progress=None) -> Transcript:
        return self._one(samples, options)


class HalvesBackend:
    """S1 speaks the first half, S2 the second; records what it was asked and from which thread."""

    name = "halves"

    def __init__(self) -> None:
        self.calls: list[DiarizationOptions] = []
        self.threads: set[str] = set()

    def diarize(self, samples: np.ndarray, options: DiarizationOptions) -> Diarization:
        self.calls.append(options)
        self.threads.add(threading.current_thread().name)
        d = len(samples) / 16000
        turns = (SpeakerTurn("S1", 0.0, d / 2), SpeakerTurn("S2", d / 2, d))
        return Diarization(turns, ("S1", "S2"), d, self.name)


def _wav(seconds: float) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.random.default_rng(0).normal(0, 500, int(16000 * seconds))).astype(np.int16).tobytes())
    return buf.getvalue()


def _app(backend):
    settings = load_settings(AsrSettings, model="fake", device="cpu", warmup=False)
    engine = WordsEngine()
    app = create_app(
        settings,
        engine_factory=lambda policy: engine,
        diarizer_factory=lambda policy: backend,
        registry=CollectorRegistry(),
    )
    return app, engine


async def _post(app, query: str):
    async with app.router.lifespan_context(app):
        for _ in range(200):  # the model loads in the background
            if app.state.serving.ready:
                break
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            r = await c.post(f"/v1/transcriptions?{query}", content=_wav(4.0), headers={"content-type": "audio/wav"})
            metrics = (await c.get("/metrics")).text
    return r, metrics


async def test_speakers_land_on_words_and_the_segment_is_split_at_the_change():
    backend = HalvesBackend()
    app, _ = _app(backend)
    r, metrics = await _post(app, "diarize=true&min_speakers=2&max_speakers=3")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["speakers"] == ["S1", "S2"]
    assert [(s["speaker"], s["text"]) for s in body["segments"]] == [("S1", "w0 w1 w2 w3"), ("S2", "w4 w5 w6 w7")]
    assert backend.calls == [DiarizationOptions(min_speakers=2, max_speakers=3)]
    assert backend.threads and "MainThread" not in backend.threads  # in a worker thread, beside the ASR
    assert 'omoai_asr_diarization_duration_seconds_count{backend="halves"} 1.0' in metrics
    assert "omoai_asr_diarization_speakers_sum 2.0" in metrics


async def test_words_are_decoded_for_alignment_but_left_out_when_not_asked_for():
    app, engine = _app(HalvesBackend())
    r, _ = await _post(app, "diarize=true&word_timestamps=false")
    assert r.status_code == 200
    assert engine.options[-1].word_timestamps is True
    assert all(s["words"] == [] for s in r.json()["segments"])
    assert [s["speaker"] for s in r.json()["segments"]] == ["S1", "S2"]


async def test_without_a_backend_diarization_is_501_and_plain_transcription_works():
    app, _ = _app(None)
    r, _ = await _post(app, "diarize=true")
    assert r.status_code == 501 and r.json()["error"]["code"] == "diarization_unavailable"
    app, _ = _app(None)
    r, _ = await _post(app, "format=json")
    assert r.status_code == 200 and "speakers" not in r.json()
