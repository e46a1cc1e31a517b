"""The realtime pieces without a socket: input formats and the exact streaming resampler, the
endpointer's turn logic, and the session state machine driven with text frames (the decoder seam
faked: it returns the item's length, so what was committed is visible)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
import pytest
from omoai_asr.geometry import DecodeOptions
from omoai_asr.realtime import events as ev
from omoai_asr.realtime.audio import PCM24, PCMA, PCMU, AudioFormatError, Resampler, decode_payload, resample_all
from omoai_asr.realtime.endpointing import FRAME, Endpointer, VadParams
from omoai_asr.realtime.session import OutboxFullError, RealtimeSession, SessionLimits
from omoai_core.errors import InvalidInputError
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


class EchoDecoder:
    """Transcribes an item as its sample count; ``gate`` holds decodes back (a slow replica)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.calls: list[int] = []

    async def transcribe(self, samples: np.ndarray, options: DecodeOptions) -> Transcript:
        await self.gate.wait()
        self.calls.append(len(samples))
        if len(samples) == 0:
            raise InvalidInputError("empty")
        d = len(samples) / 16000
        return Transcript(
            text=f"n{len(samples)}", segments=[Segment(text=f"n{len(samples)}", start=0, end=d)], duration=d, model="m"
        )


def make(**kw: Any) -> tuple[RealtimeSession, list[dict[str, Any]], EchoDecoder]:
    out: list[dict[str, Any]] = []
    decoder = EchoDecoder()
    session = RealtimeSession(
        decoder=decoder,
        options=DecodeOptions(),
        emit=lambda e: out.append(json.loads(e.model_dump_json())),
        model_name="m",
        language="vi",
        limits=kw.pop("limits", SessionLimits()),
        **kw,
    )
    return session, out, decoder


def send(s: RealtimeSession, /, **event: Any) -> None:
    s.handle_text(json.dumps(event))


def append16k(session: RealtimeSession, samples: np.ndarray) -> None:
    send(session, type="input_audio_buffer.append", audio=base64.b64encode(samples.tobytes()).decode())


def pcm16k_session(**kw: Any) -> tuple[RealtimeSession, list[dict[str, Any]], EchoDecoder]:
    session, out, decoder = make(**kw)
    update = {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}
    send(session, type="session.update", session=update)
    assert out.pop()["type"] == "session.updated"
    return session, out, decoder


async def test_commits_become_items_transcribed_in_order_with_session_clock_times() -> None:
    session, out, _ = pcm16k_session()
    task = asyncio.create_task(session.run_decoder())
    append16k(session, np.ones(8000, np.int16))
    send(session, type="input_audio_buffer.commit")
    append16k(session, np.ones(3200, np.int16))
    send(session, type="input_audio_buffer.commit")
    await session.finish()
    await task
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
    assert out[1]["previous_item_id"] == out[0]["item_id"]
    assert second["usage"] == {"type": "duration", "seconds": 0.2}
    assert second["omoai"]["segments"][0]["start"] == 0.5  # the item started 0.5 s into the session


async def test_finish_commits_the_buffer_so_no_audio_is_lost() -> None:
    session, out, decoder = pcm16k_session()
    task = asyncio.create_task(session.run_decoder())
    append16k(session, np.ones(4000, np.int16))
    await session.finish()
    await task
    assert decoder.calls == [4000]
    assert out[-1]["type"] == "conversation.item.input_audio_transcription.completed"


async def test_backpressure_holds_the_reader_until_the_decoder_catches_up() -> None:
    session, _, decoder = pcm16k_session(limits=SessionLimits(max_pending_s=1.0))
    decoder.gate.clear()
    task = asyncio.create_task(session.run_decoder())
    append16k(session, np.ones(24000, np.int16))
    send(session, type="input_audio_buffer.commit")
    waiter = asyncio.create_task(session.wait_for_room())
    await asyncio.sleep(0.05)
    assert not waiter.done() and session.lag_s == 1.5
    decoder.gate.set()
    await asyncio.wait_for(waiter, 5)
    await session.finish()
    await task
    assert session.lag_s == 0


def test_a_full_buffer_refuses_the_append_and_says_to_commit() -> None:
    session, out, _ = pcm16k_session(limits=SessionLimits(max_buffer_s=1.0))
    append16k(session, np.ones(12000, np.int16))
    append16k(session, np.ones(8000, np.int16))
    assert out[-1]["error"]["code"] == "input_audio_buffer_full"
    append16k(session, np.ones(4000, np.int16))  # what fits is still taken
    assert out[-1]["type"] == "error" and len(out) == 1


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
def test_each_client_mistake_is_one_error_event_and_the_session_stays_usable(frame: str, code: str) -> None:
    session, out, _ = pcm16k_session()
    session.handle_text(frame)
    assert [e["type"] for e in out] == ["error"]
    assert out[0]["error"]["code"] == code
    if '"event_id": "c1"' in frame:
        assert out[0]["error"]["event_id"] == "c1"
    append16k(session, np.ones(3200, np.int16))
    send(session, type="input_audio_buffer.commit")
    assert out[-1]["type"] == "input_audio_buffer.committed"


def test_the_format_cannot_change_under_buffered_audio() -> None:
    session, out, _ = pcm16k_session()
    append16k(session, np.ones(1600, np.int16))
    send(
        session,
        type="session.update",
        session={"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcmu"}}}},
    )
    assert out[-1]["error"]["code"] == "input_audio_buffer_not_empty"
    send(session, type="input_audio_buffer.clear")
    assert out[-1]["type"] == "input_audio_buffer.cleared"
    send(
        session,
        type="session.update",
        session={"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcmu"}}}},
    )
    assert out[-1]["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}


def test_the_older_transcription_session_update_is_answered_in_its_own_shape() -> None:
    session, out, _ = make()
    send(
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


def test_an_outbox_that_overflows_ends_the_session() -> None:
    def full(_: ev.ServerEvent) -> None:
        raise OutboxFullError

    session = RealtimeSession(decoder=EchoDecoder(), options=DecodeOptions(), emit=full, model_name="m", language="vi")
    with pytest.raises(OutboxFullError):
        session.handle_text("{")
