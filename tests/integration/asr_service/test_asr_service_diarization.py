"""Speaker diarization through the real service: ``omoai-asr serve`` (tiny random ASR checkpoint,
the default diarization backend with its real weights) on loopback, a committed two-voice
conversation, our API and the official ``openai`` client's ``diarized_json``."""

from __future__ import annotations

import base64
import io
import wave
from pathlib import Path

import httpx
import openai
import pytest
from conftest import AsrServer
from omoai_audio import decode_audio

from tests.support.diarization_corpus import read_rttm

pytestmark = pytest.mark.timeout(300)

DATA = Path(__file__).resolve().parents[2] / "data" / "diarization"
CONV = DATA / "quick-2spk-100.flac"  # voices dita, kal


def _reference() -> list:
    return read_rttm((DATA / "quick-2spk-100.rttm").read_text())


def _wav_data_url(samples) -> str:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(samples.tobytes())
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode()


def _agreement(words: list[dict], mapping: dict[str, str]) -> float:
    """Share of words (inside one reference turn) whose speaker maps to that turn's voice."""
    ref = _reference()
    hits = total = 0
    for w in words:
        mid = (w["start"] + w["end"]) / 2
        voices = {t.speaker for t in ref if t.start <= mid <= t.end}
        if len(voices) == 1:
            total += 1
            hits += mapping.get(w["speaker"]) in voices
    return hits / max(total, 1)


def test_transcriptions_return_a_speaker_on_every_segment_and_word(server: AsrServer) -> None:
    with server.client() as c:
        r = c.post(
            "/v1/transcriptions",
            files={"file": ("conv.flac", CONV.read_bytes(), "audio/flac")},
            data={"diarize": "true"},
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["speakers"] == ["S1", "S2"]
    words = [w for s in body["segments"] for w in s["words"]]
    assert words, "the tiny model emits words to align"
    assert all(s["speaker"] in ("S1", "S2") for s in body["segments"])
    assert all(w["speaker"] == s["speaker"] for s in body["segments"] for w in s["words"])
    # S1 speaks first: the first reference voice.
    first = _reference()[0].speaker
    other = ({t.speaker for t in _reference()} - {first}).pop()
    assert _agreement(words, {"S1": first, "S2": other}) > 0.9


def test_vtt_and_srt_carry_speakers_and_counts_are_honoured(server: AsrServer) -> None:
    with server.client() as c:
        vtt = c.post(
            "/v1/transcriptions?diarize=true&format=vtt",
            content=CONV.read_bytes(),
            headers={"content-type": "audio/flac"},
        )
        one = c.post(
            "/v1/transcriptions?diarize=true&num_speakers=1",
            content=CONV.read_bytes(),
            headers={"content-type": "audio/flac"},
        )
    assert vtt.status_code == 200 and "<v S1>" in vtt.text and "<v S2>" in vtt.text
    assert one.status_code == 200 and one.json()["speakers"] == ["S1"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("num_speakers=2", "requires diarize=true"),
        ("diarize=true&min_speakers=3&max_speakers=2", "exceeds"),
        ("diarize=true&num_speakers=5&max_speakers=3", "outside"),
        ("diarize=true&num_speakers=99", "num_speakers"),
    ],
)
def test_bad_speaker_options_are_a_400_that_names_them(server: AsrServer, query: str, message: str) -> None:
    with server.client() as c:
        r = c.post(f"/v1/transcriptions?{query}", content=CONV.read_bytes(), headers={"content-type": "audio/flac"})
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]["message"]


def test_openai_client_gets_diarized_json_and_known_speakers_are_named(server: AsrServer) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with CONV.open("rb") as fh:
        plain = client.audio.transcriptions.create(model="chunkformer-tiny", file=fh, response_format="diarized_json")
    assert plain.task == "transcribe" and plain.segments
    assert {s.speaker for s in plain.segments} == {"S1", "S2"}
    assert all(s.type == "transcript.text.segment" and s.end >= s.start for s in plain.segments)
    assert " ".join(s.text for s in plain.segments).split() == plain.text.split()

    # A clip of kal taken from another recording names kal's turns.
    other = decode_audio(DATA / "quick-3spk-100.flac").samples
    kal = next(t for t in read_rttm((DATA / "quick-3spk-100.rttm").read_text()) if t.speaker == "kal")
    clip = other[int(kal.start * 16000) : int(kal.end * 16000)]
    with CONV.open("rb") as fh:
        named = client.audio.transcriptions.create(
            model="chunkformer-tiny",
            file=fh,
            response_format="diarized_json",
            known_speaker_names=["Kal"],
            known_speaker_references=[_wav_data_url(clip)],
        )
    assert {s.speaker for s in named.segments} == {"Kal", "S1"}
    words = [{"start": s.start, "end": s.end, "speaker": s.speaker} for s in named.segments]
    assert _agreement(words, {"Kal": "kal", "S1": "dita"}) > 0.8


def test_bad_known_speaker_fields_are_a_400(server: AsrServer) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    for names, refs, message in [
        (["A", "B"], ["data:audio/wav;base64,AAAA"], "pair up"),
        (["A"], ["https://example.com/a.wav"], "data URL"),
        (["A"], ["data:audio/wav;base64,@@@"], "base64"),
        (
            ["A"],
            ["data:audio/wav;base64," + base64.b64encode(b"not audio at all").decode()],
            "known_speaker_references[0]",
        ),
    ]:
        with CONV.open("rb") as fh, pytest.raises(openai.BadRequestError) as e:
            client.audio.transcriptions.create(
                model="chunkformer-tiny",
                file=fh,
                response_format="diarized_json",
                known_speaker_names=names,
                known_speaker_references=refs,
            )
        assert message in str(e.value)


def test_diarization_metrics_are_exported(server: AsrServer) -> None:
    with server.client() as c:
        c.post("/v1/transcriptions?diarize=true", content=CONV.read_bytes(), headers={"content-type": "audio/flac"})
        text = httpx.get(server.url + "/metrics").text
    assert 'omoai_asr_diarization_duration_seconds_count{backend="omoai"}' in text
    assert "omoai_asr_diarization_real_time_factor_bucket" in text
    assert "omoai_asr_diarization_speakers_bucket" in text
    assert "omoai_asr_diarized_audio_seconds_total" in text
