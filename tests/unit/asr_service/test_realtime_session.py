"""The realtime pieces without a socket: input formats and the exact streaming resampler, the
endpointer's turn logic, and the session state machine driven with text frames (the live-stream
seam faked: an item's text is its sample count, so what was fed and committed is visible)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
import pytest
from omoai_asr.geometry import DecodeOptions
from omoai_asr.live import Committed, Final, Partial, StreamClosedError
from omoai_asr.realtime import events as ev
from omoai_asr.realtime.audio import PCM24, PCMA, PCMU, AudioFormatError, Resampler, decode_payload, resample_all
from omoai_asr.realtime.endpointing import FRAME, Endpointer, VadParams
from omoai_asr.realtime.session import OutboxFullError, RealtimeSession, SessionLimits
from omoai_core.schemas import Segment, Transcript

# -- audio ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [24000, 8000, 16000])
def test_streaming_resampler_equals_the_whole_recording_under_any_split(rate: int) -> None:
    rng = np.random.default_rng(rate)
    x = (rng.standard_normal(rate) * 3000).astype(np.int16)
    whole = resample_all(x, rate)
    assert len(whole) == -(-len(x) * 16000 // rate)
    for _ in range(4):
        r, parts, i = Resampler(rate), [], 0
        while i < len(x):
            n = int(rng.integers(1, 2000))
            parts.append(r.feed(x[i : i + n]))
            i += n
        parts.append(r.flush())
        assert np.array_equal(np.concatenate(parts), whole)


def test_resampler_keeps_a_tone_and_removes_what_16_khz_cannot_carry() -> None:
    t = np.arange(24000) / 24000
    tone = resample_all((10000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16), 24000)
    want = 10000 * np.sin(2 * np.pi * 1000 * np.arange(len(tone)) / 16000)
    assert np.abs(tone[200:-200] - want[200:-200]).max() < 150  # 1.5% of the amplitude
    alias = resample_all((10000 * np.sin(2 * np.pi * 10000 * t)).astype(np.int16), 24000)
    assert np.abs(alias[200:-200]).max() < 300  # 10 kHz would fold to 6 kHz: filtered out


def test_g711_decodes_to_the_standard_values() -> None:
    pcmu = decode_payload(base64.b64encode(bytes([0x00, 0x80, 0xFF, 0x7F])).decode(), PCMU, max_bytes=100)
    assert pcmu.tolist() == [-32124, 32124, 0, 0]
    pcma = decode_payload(base64.b64encode(bytes([0xD5, 0x55, 0xAA, 0x2A])).decode(), PCMA, max_bytes=100)
    assert pcma.tolist() == [8, -8, 32256, -32256]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("not base64!", "not valid base64"),
        (base64.b64encode(b"\x01\x02\x03").decode(), "even byte count"),
        (base64.b64encode(b"RIFF" + bytes(100)).decode(), "file container"),
        (base64.b64encode(bytes(4000)).decode(), "more than 1000 bytes"),
    ],
)
def test_bad_payloads_are_refused_with_what_is_wrong(payload: str, message: str) -> None:
    with pytest.raises(AudioFormatError, match=message):
        decode_payload(payload, PCM24, max_bytes=1000)


# -- endpointing ----------------------------------------------------------------------------------


def frames(*runs: tuple[float, int]) -> np.ndarray:
    """Speech probabilities: (probability, milliseconds) runs, one value per 32 ms frame."""
    return np.concatenate([np.full(ms // 32, p, dtype=np.float32) for p, ms in runs])


def test_a_vietnamese_hesitation_does_not_split_a_turn() -> None:
    e = Endpointer(VadParams())
    marks = e.feed(frames((0.0, 640), (0.9, 1600), (0.1, 704), (0.9, 1600), (0.0, 1280)))
    assert [m.kind for m in marks] == ["start", "stop"]
    start, stop = marks
    assert start.at == 640 * 16 - 300 * 16  # the prefix padding before the first speech frame
    speech_end = (640 + 1600 + 704 + 1600) * 16
    assert stop.at == speech_end + 29 * FRAME  # the first whole frame count past 900 ms of silence


def test_a_long_enough_silence_ends_the_turn_and_a_new_one_starts_later() -> None:
    e = Endpointer(VadParams(silence_duration_ms=500))
    marks = e.feed(frames((0.9, 960), (0.0, 992), (0.9, 640), (0.0, 640)))
    assert [m.kind for m in marks] == ["start", "stop", "start", "stop"]
    assert marks[2].at >= marks[1].at  # never before audio already committed


def test_a_never_ending_turn_is_cut_at_the_maximum_item_length() -> None:
    e = Endpointer(VadParams(max_item_ms=2000, prefix_padding_ms=0))
    marks = e.feed(frames((0.9, 6400)))
    assert [m.kind for m in marks] == ["start", "cut", "cut", "cut"]
    assert [m.at for m in marks[1:]] == [63 * FRAME, 126 * FRAME, 189 * FRAME]  # 63 frames = 2016 ms


# -- the session state machine --------------------------------------------------------------------


class FakeStream:
    """The live stream seam: text is each item's sample count; ``gate`` holds feeding back (a
    replica behind: backpressure)."""

    def __init__(self, options: DecodeOptions, partials: bool) -> None:
        self.options, self.partials = options, partials
        self.gate = asyncio.Event()
        self.gate.set()
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.item = 0
        self.fed: list[int] = []
        self.commits: list[int] = []
        self.closed = False
        self.buffered_seconds = 0.0

    async def feed(self, pcm: np.ndarray) -> None:
        assert pcm.dtype == np.int16
        await self.gate.wait()
        self.item += len(pcm)
        self.fed.append(len(pcm))
        if self.partials:
            self.queue.put_nowait(Partial(f"~{self.item}", self.item / 16000))

    async def commit(self) -> Transcript:
        n, self.item = self.item, 0
        self.commits.append(n)
        d = n / 16000
        t = Transcript(text=f"n{n}", segments=[Segment(text=f"n{n}", start=0, end=d)], duration=d, model="m")
        self.queue.put_nowait(Committed(t.text, (), d))
        self.queue.put_nowait(Final(t, 0.0))
        return t

    def clear(self) -> None:
        self.item = 0

    def close(self) -> None:
        self.closed = True
        self.queue.put_nowait(None)

    async def next_event(self) -> Any:
        event = await self.queue.get()
        if event is None:
            raise StreamClosedError("closed")
        return event


class LoudnessVad:
    """Stands in for Silero: a frame is speech when its samples are loud."""

    def run_rows(self, rows: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.abs(rows[:, 64:]).mean(axis=1) > 0.1).astype(np.float32), h, c


def make(**kw: Any) -> tuple[RealtimeSession, list[dict[str, Any]], list[FakeStream]]:
    out: list[dict[str, Any]] = []
    streams: list[FakeStream] = []

    def open_stream(options: DecodeOptions, partials: bool) -> FakeStream:
        streams.append(FakeStream(options, partials))
        return streams[-1]

    session = RealtimeSession(
        open_stream=open_stream,
        options=DecodeOptions(),
        emit=lambda e: out.append(json.loads(e.model_dump_json())),
        model_name="m",
        language="vi",
        limits=kw.pop("limits", SessionLimits()),
        **kw,
    )
    return session, out, streams


async def send(s: RealtimeSession, /, **event: Any) -> None:
    await s.handle_text(json.dumps(event))


async def append16k(session: RealtimeSession, samples: np.ndarray) -> None:
    await send(session, type="input_audio_buffer.append", audio=base64.b64encode(samples.tobytes()).decode())


async def pcm16k_session(**kw: Any) -> tuple[RealtimeSession, list[dict[str, Any]], list[FakeStream]]:
    session, out, streams = make(**kw)
    update = {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}
    await send(session, type="session.update", session=update)
    assert out.pop()["type"] == "session.updated"
    return session, out, streams


async def drain(session: RealtimeSession, task: asyncio.Task[None] | None = None) -> None:
    """What the route does at the end: finish, then the event task ends with the stream."""
    task = task or asyncio.create_task(session.run_events())
    await session.finish()
    await asyncio.wait_for(task, 5)


async def test_commits_become_items_in_order_with_session_clock_times() -> None:
    session, out, _ = await pcm16k_session()
    await append16k(session, np.ones(8000, np.int16))
    await send(session, type="input_audio_buffer.commit")
    await append16k(session, np.ones(3200, np.int16))
    await send(session, type="input_audio_buffer.commit")
    await drain(session)
    types = [e["type"] for e in out]
    assert types == [
        "input_audio_buffer.committed",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    ]
    first, second = out[3], out[5]
    assert (first["transcript"], second["transcript"]) == ("n8000", "n3200")
    assert (first["item_id"], second["item_id"]) == (out[0]["item_id"], out[1]["item_id"])
    assert out[1]["previous_item_id"] == out[0]["item_id"]
    assert second["usage"] == {"type": "duration", "seconds": 0.2}
    assert second["omoai"]["segments"][0]["start"] == 0.5  # the item started 0.5 s into the session


async def test_finish_commits_the_buffer_so_no_audio_is_lost() -> None:
    session, out, streams = await pcm16k_session()
    await append16k(session, np.ones(4000, np.int16))
    await drain(session)
    assert streams[-1].commits == [4000] and streams[-1].closed
    assert out[-1]["type"] == "conversation.item.input_audio_transcription.completed"


async def test_backpressure_holds_the_frame_until_the_decoder_takes_the_audio() -> None:
    session, _, streams = await pcm16k_session()
    streams[-1].gate.clear()
    waiter = asyncio.create_task(append16k(session, np.ones(1600, np.int16)))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    streams[-1].gate.set()
    await asyncio.wait_for(waiter, 5)
    assert streams[-1].fed == [1600]


async def test_24_khz_input_reaches_the_stream_as_the_whole_recording_resampled() -> None:
    session, _, streams = make()
    x = (np.random.default_rng(0).standard_normal(24000) * 2000).astype(np.int16)
    for i in range(0, len(x), 7001):
        await send(
            session, type="input_audio_buffer.append", audio=base64.b64encode(x[i : i + 7001].tobytes()).decode()
        )
    await send(session, type="input_audio_buffer.commit")
    assert streams[-1].commits == [len(resample_all(x, 24000))] == [16000]


async def test_partials_are_an_opt_in_extension_event_never_mixed_into_deltas() -> None:
    session, out, streams = make()
    update = {
        "type": "transcription",
        "include": ["omoai.partials"],
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}},
    }
    await send(session, type="session.update", session=update)
    assert streams[-1].partials  # the stream was reopened with partials (it held no audio yet)
    task = asyncio.create_task(session.run_events())
    await append16k(session, np.ones(1600, np.int16))
    await send(session, type="input_audio_buffer.commit")
    await drain(session, task)
    kinds = [e["type"] for e in out]
    assert "omoai.input_audio_transcription.partial" in kinds
    partial = out[kinds.index("omoai.input_audio_transcription.partial")]
    assert (partial["text"], partial["audio_end_ms"]) == ("~1600", 100)
    assert [e["delta"] for e in out if e["type"].endswith(".delta")] == ["n1600"]


async def test_server_vad_feeds_only_the_turns_and_a_hesitation_stays_in_one_item() -> None:
    vad = VadParams(prefix_padding_ms=96, silence_duration_ms=900)
    session, out, streams = make(vad_model=LoudnessVad(), limits=SessionLimits(vad=vad))
    update = {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}
    await send(session, type="session.update", session=update)
    task = asyncio.create_task(session.run_events())
    quiet, loud = np.zeros(512, np.int16), np.full(512, 8000, np.int16)
    # 0.64 s quiet, 1.28 s speech, a 0.64 s hesitation, 1.28 s speech, 1.28 s quiet.
    audio = np.concatenate([quiet] * 20 + [loud] * 40 + [quiet] * 20 + [loud] * 40 + [quiet] * 40)
    for i in range(0, len(audio), 3000):
        await append16k(session, audio[i : i + 3000])
    await drain(session, task)
    kinds = [e["type"] for e in out if not e["type"].startswith("session")]
    assert kinds == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    ]
    started = next(e for e in out if e["type"] == "input_audio_buffer.speech_started")
    stopped = next(e for e in out if e["type"] == "input_audio_buffer.speech_stopped")
    assert started["audio_start_ms"] == 640 - 96
    completed = out[-1]
    item_samples = (stopped["audio_end_ms"] - started["audio_start_ms"]) * 16
    assert streams[-1].commits == [item_samples]  # exactly the turn's audio, nothing between turns
    assert completed["omoai"]["audio_start_ms"] == started["audio_start_ms"]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{", "invalid_json"),
        ("[1, 2]", "invalid_event"),
        ('{"type": "response.create"}', "unknown_event_type"),
        ('{"type": "input_audio_buffer.append"}', "invalid_event"),
        ('{"type": "input_audio_buffer.append", "audio": "@@@"}', "invalid_audio"),
        ('{"type": "input_audio_buffer.commit", "event_id": "c1"}', "input_audio_buffer_commit_empty"),
        ('{"type": "session.update", "session": {"type": "realtime"}}', "unsupported_session_type"),
        ('{"type": "session.update", "session": {"type": "transcription", "audio": {"input": '
         '{"turn_detection": {"type": "semantic_vad"}}}}}', "unsupported_turn_detection"),
        ('{"type": "session.update", "session": {"type": "transcription", "audio": {"input": '
         '{"turn_detection": {"type": "server_vad"}}}}}', "server_vad_unavailable"),
        ('{"type": "session.update", "session": {"type": "transcription", "audio": {"input": '
         '{"format": {"type": "audio/pcm", "rate": 44100}}}}}', "invalid_event"),
    ],
)  # fmt: skip
async def test_each_client_mistake_is_one_error_event_and_the_session_stays_usable(frame: str, code: str) -> None:
    session, out, _ = await pcm16k_session()
    await session.handle_text(frame)
    assert [e["type"] for e in out] == ["error"]
    assert out[0]["error"]["code"] == code
    if '"event_id": "c1"' in frame:
        assert out[0]["error"]["event_id"] == "c1"
    await append16k(session, np.ones(3200, np.int16))
    await send(session, type="input_audio_buffer.commit")
    assert out[-1]["type"] == "input_audio_buffer.committed"


async def test_the_format_cannot_change_under_buffered_audio() -> None:
    session, out, _ = await pcm16k_session()
    await append16k(session, np.ones(1600, np.int16))
    await send(
        session,
        type="session.update",
        session={"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcmu"}}}},
    )
    assert out[-1]["error"]["code"] == "input_audio_buffer_not_empty"
    await send(session, type="input_audio_buffer.clear")
    assert out[-1]["type"] == "input_audio_buffer.cleared"
    await send(
        session,
        type="session.update",
        session={"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcmu"}}}},
    )
    assert out[-1]["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}


async def test_the_older_transcription_session_update_is_answered_in_its_own_shape() -> None:
    session, out, _ = make()
    await send(
        session,
        type="transcription_session.update",
        session={
            "input_audio_format": "g711_alaw",
            "turn_detection": None,
            "input_audio_noise_reduction": {"type": "near_field"},
        },
    )
    (updated,) = out
    assert updated["type"] == "transcription_session.updated"
    assert updated["session"]["input_audio_format"] == "g711_alaw"
    assert updated["session"]["turn_detection"] is None
    assert updated["session"]["omoai"]["noise_reduction_applied"] is False


def test_session_created_reports_the_decode_settings_and_extensions() -> None:
    session, _, _ = make()
    created = session.created().session
    assert created["type"] == "transcription"
    assert created["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert created["omoai"]["decode"]["chunk_size"] == DecodeOptions().chunk_size
    assert created["audio"]["input"]["turn_detection"] is None  # no VAD model given


async def test_an_outbox_that_overflows_ends_the_session() -> None:
    def full(_: ev.ServerEvent) -> None:
        raise OutboxFullError

    session = RealtimeSession(open_stream=FakeStream, options=DecodeOptions(), emit=full, model_name="m", language="vi")
    with pytest.raises(OutboxFullError):
        await session.handle_text("{")
