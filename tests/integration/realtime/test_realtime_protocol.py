"""``/v1/realtime`` on a real uvicorn server on loopback with the shared fixtures' checkpoints: the
official ``openai`` SDK's realtime client unmodified, plain ``websockets`` for the protocol's
corners, exactness against the batch transcript (CTC and transducer, random-size appends),
concurrency, every bad input, limits, capacity and metrics, and 1,000 sessions with flat memory.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import gc
import json
import random
import shutil
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from omoai_asr.realtime.audio import resample_all
from scipy.signal import resample_poly

from tests.support.realtime import LiveServer, fixture_clips, fixture_model, live_asr

pytestmark = pytest.mark.timeout(300)

TOKEN = "realtime-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
COMPLETED = "conversation.item.input_audio_transcription.completed"


@pytest.fixture(scope="module")
def ctc() -> Iterator[LiveServer]:
    with live_asr(fixture_model("small"), api_token=TOKEN, realtime_max_append_bytes=64 * 1024) as s:
        yield s


@pytest.fixture(scope="module")
def rnnt() -> Iterator[LiveServer]:
    with live_asr(fixture_model("rnnt_small"), api_token=TOKEN) as s:
        yield s


def batch(server: LiveServer, samples: np.ndarray, **decode: Any) -> Any:
    """What the batch path gives for these 16 kHz samples under a session's decode settings (the
    realtime defaults, with ``decode`` changes)."""
    options = dataclasses.replace(server.app.state.realtime.options, **decode)
    return server.app.state.serving.runtime.engine.transcribe(samples, options)


def to_24k(samples: np.ndarray) -> np.ndarray:
    return np.clip(np.round(resample_poly(samples.astype(np.float64), 3, 2)), -32768, 32767).astype(np.int16)


def b64(samples: np.ndarray) -> str:
    return base64.b64encode(samples.astype("<i2").tobytes()).decode()


def pieces(samples: np.ndarray, rng: random.Random, most: int = 6000) -> Iterator[np.ndarray]:
    i = 0
    while i < len(samples):
        n = rng.randint(1, most)
        yield samples[i : i + n]
        i += n


def config(rate: int = 24000, **input_: Any) -> dict[str, Any]:
    audio = {"format": {"type": "audio/pcm", "rate": rate}, "turn_detection": None, **input_}
    return {"type": "session.update", "session": {"type": "transcription", "audio": {"input": audio}}}


async def recv(ws: Any, until: str = COMPLETED, timeout: float = 120) -> list[dict[str, Any]]:
    """Server events up to and including the first of type ``until``."""
    out: list[dict[str, Any]] = []
    while True:
        out.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
        if out[-1]["type"] == until:
            return out


async def stream(server: LiveServer, samples: np.ndarray, rate: int, seed: int) -> list[dict[str, Any]]:
    """One session: configure (turn detection off), random-size appends, one commit; its events."""
    async with websockets.connect(server.ws_url, additional_headers=AUTH) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        await ws.send(json.dumps(config(rate)))
        assert json.loads(await ws.recv())["type"] == "session.updated"
        for piece in pieces(samples, random.Random(seed)):
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64(piece)}))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        return await recv(ws)


def assert_same(events: list[dict[str, Any]], want: Any) -> None:
    completed = events[-1]
    deltas = "".join(e["delta"] for e in events if e["type"].endswith(".delta"))
    assert completed["transcript"] == deltas == want.text
    assert completed["omoai"]["segments"] == [s.model_dump(exclude_none=True) for s in want.segments]
    assert completed["usage"] == {"type": "duration", "seconds": round(want.duration, 3)}


# -- the official client --------------------------------------------------------------------------


async def test_the_official_sdk_runs_a_transcription_session_unmodified(ctc: LiveServer) -> None:
    import openai

    samples = fixture_clips("small")["short"]
    x24 = to_24k(samples)
    client = openai.AsyncOpenAI(base_url=ctc.url + "/v1", api_key=TOKEN, max_retries=0)
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        created = await conn.recv()
        assert created.type == "session.created"
        await conn.session.update(
            session={
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": 24000},
                        "transcription": {"model": "gpt-4o-transcribe", "language": "vi"},
                        "turn_detection": None,
                        "noise_reduction": {"type": "near_field"},
                    }
                },
            }
        )
        for piece in pieces(x24, random.Random(1), 9000):
            await conn.input_audio_buffer.append(audio=b64(piece))
        await conn.input_audio_buffer.commit()
        seen: list[Any] = []
        async for event in conn:
            seen.append(event)
            if event.type == COMPLETED:
                break
    types = [e.type for e in seen]
    assert types[:2] == ["session.updated", "input_audio_buffer.committed"]
    assert seen[0].session.audio.input.noise_reduction is None  # accepted, reported as not applied
    want = batch(ctc, resample_all(x24, 24000))
    assert seen[-1].transcript == want.text
    assert seen[-1].usage.seconds == round(want.duration, 3)


async def test_a_missing_or_wrong_token_is_refused_before_the_upgrade(ctc: LiveServer) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}):
        with pytest.raises(websockets.InvalidStatus) as e:
            async with websockets.connect(ctc.ws_url, additional_headers=headers):
                pass
        assert e.value.response.status_code == 401


# -- exactness ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ctc", "rnnt"])
async def test_one_commit_at_the_end_gives_exactly_the_batch_transcript(
    kind: str, request: pytest.FixtureRequest
) -> None:
    server: LiveServer = request.getfixturevalue(kind)
    clips = fixture_clips("small" if kind == "ctc" else "rnnt_small")
    tiny, short = clips["tiny"], clips["short"]
    # 16 kHz (our extension): the very samples of the batch call.
    assert_same(await stream(server, tiny, 16000, 1), batch(server, tiny))
    # 24 kHz (OpenAI's rate): compared on the server's deterministic resampling of it.
    x24 = to_24k(short)
    assert_same(await stream(server, x24, 24000, 2), batch(server, resample_all(x24, 24000)))


async def test_concurrent_sessions_each_get_their_own_batch_transcript(ctc: LiveServer) -> None:
    clips = fixture_clips("small")
    audio = [clips["short"], clips["tiny"], clips["short"][::-1].copy(), clips["short"][: 3 * 16000]]
    got = await asyncio.gather(*(stream(ctc, a, 16000, i) for i, a in enumerate(audio)))
    for events, a in zip(got, audio, strict=True):
        assert_same(events, batch(ctc, a))


async def test_text_arrives_while_the_audio_is_still_coming_and_the_end_is_still_exact(ctc: LiveServer) -> None:
    # Small contexts: a 5.12 s window is committed once 1.84 s of audio past it arrived (3 layers).
    decode = {"chunk_size": 8, "left_context": 16, "right_context": 4}
    audio = fixture_clips("small")["long"][: 20 * 16000]
    async with websockets.connect(ctc.ws_url, additional_headers=AUTH) as ws:
        created = json.loads(await ws.recv())
        assert created["session"]["omoai"]["decode"]["total_batch_duration"] == 11.0
        update = config(16000)
        update["session"]["omoai"] = {"decode": decode}
        update["session"]["include"] = ["omoai.partials"]
        await ws.send(json.dumps(update))
        await recv(ws, "session.updated")
        for piece in pieces(audio, random.Random(7), 16000):
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64(piece)}))
        # No commit yet, well before the idle timeout: the windows whose right context arrived are
        # committed as deltas already.
        early = await recv(ws, "conversation.item.input_audio_transcription.delta", timeout=30)
        assert all(e["type"] != "error" for e in early)
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        events = early + await recv(ws)
    assert_same(events, batch(ctc, audio, **decode))  # partials never mixed into the deltas
    partials = [e for e in events if e["type"] == "omoai.input_audio_transcription.partial"]
    assert partials and partials[0]["item_id"] == events[-1]["item_id"]
    assert all(0 < p["audio_end_ms"] <= len(audio) // 16 for p in partials)


async def test_a_client_may_choose_the_decode_settings_before_its_audio(ctc: LiveServer) -> None:
    short = fixture_clips("small")["short"]
    async with websockets.connect(ctc.ws_url, additional_headers=AUTH) as ws:
        await recv(ws, "session.created")
        update = config(16000)
        update["session"]["omoai"] = {"decode": {"chunk_size": 32, "right_context": 32, "total_batch_duration": 1800}}
        await ws.send(json.dumps(update))
        decode = (await recv(ws, "session.updated"))[-1]["session"]["omoai"]["decode"]
        assert (decode["chunk_size"], decode["right_context"], decode["total_batch_duration"]) == (32, 32, 1800)
        for piece in pieces(short, random.Random(4)):
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64(piece)}))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        events = await recv(ws)
        update["session"]["omoai"] = {"decode": {"chunk_size": 0}}
        await ws.send(json.dumps(update))
        assert json.loads(await ws.recv())["error"]["code"] in ("invalid_event", "invalid_decode_settings")
    assert_same(events, batch(ctc, short, chunk_size=32, right_context=32, total_batch_duration=1800.0))


def test_the_listen_command_prints_the_committed_text(ctc: LiveServer, tmp_path: Path) -> None:
    from tests.unit.asr.conftest import FIXTURES

    clip = FIXTURES / "small" / "audio" / "short.wav"
    (tmp_path / "token").write_text(TOKEN)
    cmd = [sys.executable, "-m", "omoai_asr", "listen", "--fast", "--url", ctc.url, "--api-token-file"]
    done = subprocess.run([*cmd, str(tmp_path / "token"), str(clip)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == batch(ctc, fixture_clips("small")["short"]).text + "\n"
    refused = subprocess.run([*cmd, "/dev/null", str(clip)], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "HTTP 401" in refused.stderr


def _speech(text: str, tmp: Path) -> np.ndarray:
    """Vietnamese speech from espeak-ng, 16 kHz int16 (skips where the tools are missing)."""
    from tests.unit.asr.conftest import read_wav

    if shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None:
        pytest.skip("espeak-ng and ffmpeg make the speech (scripts/setup.sh installs them)")
    raw, wav = tmp / "raw.wav", tmp / f"{abs(hash(text))}.wav"
    subprocess.run(["espeak-ng", "-v", "vi", "-w", str(raw), text], check=True, capture_output=True, timeout=60)
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(raw), "-ar", "16000", "-ac", "1", str(wav)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return read_wav(wav)


async def test_server_vad_splits_turns_not_hesitations_and_each_item_is_its_batch(
    ctc: LiveServer, tmp_path: Path
) -> None:
    silence = np.zeros(16000, np.int16)
    a = _speech("xin chào các bạn", tmp_path)
    b = _speech("hôm nay trời đẹp", tmp_path)
    c = _speech("cảm ơn bạn đã lắng nghe", tmp_path)
    # Turn 1: a, a 0.5 s hesitation, b. Then 1.5 s of silence, turn 2: c, then silence.
    audio = np.concatenate([silence, a, silence[:8000], b, silence, silence[:8000], c, silence, silence])
    async with websockets.connect(ctc.ws_url, additional_headers=AUTH) as ws:
        created = json.loads(await ws.recv())["session"]
        assert created["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 900
        await ws.send(json.dumps(config(16000, turn_detection={"type": "server_vad"})))
        for piece in pieces(audio, random.Random(9)):
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64(piece)}))
        events = await recv(ws)
        events += await recv(ws)
    kinds = [e["type"] for e in events]
    assert kinds.count("input_audio_buffer.speech_started") == kinds.count("input_audio_buffer.speech_stopped") == 2
    for done in (e for e in events if e["type"] == COMPLETED):
        start, end = done["omoai"]["audio_start_ms"] * 16, done["omoai"]["audio_end_ms"] * 16
        assert done["transcript"] == batch(ctc, audio[start:end]).text
    first = next(e for e in events if e["type"] == COMPLETED)
    assert first["omoai"]["audio_end_ms"] > (16000 + len(a) + 8000 + len(b)) // 16  # the hesitation did not split


# -- bad input ------------------------------------------------------------------------------------


async def test_every_bad_input_gets_an_error_event_and_the_session_goes_on(ctc: LiveServer) -> None:
    short = fixture_clips("small")["tiny"]
    bad: list[tuple[str | bytes, str]] = [
        ("{not json", "invalid_json"),
        ('"a string"', "invalid_event"),
        ('{"type": "response.create"}', "unknown_event_type"),
        ('{"type": "input_audio_buffer.append", "audio": 5}', "invalid_event"),
        ('{"type": "input_audio_buffer.append", "audio": "%%%="}', "invalid_audio"),
        (json.dumps({"type": "input_audio_buffer.append", "audio": b64(short)[:-4] + "AAA="}), "invalid_audio"),
        (json.dumps({"type": "input_audio_buffer.append", "audio": b64(np.zeros(33000, np.int16))}), "invalid_audio"),
        ('{"type": "input_audio_buffer.commit"}', "input_audio_buffer_commit_empty"),
        (b"\x00\x01binary", "binary_frame"),
        ('{"type": "session.update", "session": {"type": "realtime", "model": "gpt-realtime"}}', "unsupported_session_type"),
    ]  # fmt: skip
    async with websockets.connect(ctc.ws_url, additional_headers=AUTH) as ws:
        await recv(ws, "session.created")
        await ws.send(json.dumps(config(16000)))
        await recv(ws, "session.updated")
        for frame, code in bad:
            await ws.send(frame)
            event = json.loads(await ws.recv())
            assert (event["type"], event["error"]["code"]) == ("error", code), frame
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64(short)}))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        assert (await recv(ws))[-1]["transcript"] == batch(ctc, short).text


async def test_a_frame_over_the_size_limit_closes_only_that_session(ctc: LiveServer) -> None:
    async with websockets.connect(ctc.ws_url, additional_headers=AUTH, max_size=None) as ws:
        await recv(ws, "session.created")
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 200_000}))
        with pytest.raises(websockets.ConnectionClosed) as e:
            await asyncio.wait_for(ws.recv(), 10)
        assert e.value.rcvd is not None and e.value.rcvd.code == 1009
    events = await stream(ctc, fixture_clips("small")["tiny"], 16000, 3)  # the replica serves on
    assert events[-1]["type"] == COMPLETED


async def test_server_events_follow_the_openai_shapes(ctc: LiveServer) -> None:
    from openai.types.realtime import (
        ConversationItemInputAudioTranscriptionCompletedEvent,
        ConversationItemInputAudioTranscriptionDeltaEvent,
        InputAudioBufferCommittedEvent,
        RealtimeErrorEvent,
    )

    shapes = {
        "input_audio_buffer.committed": InputAudioBufferCommittedEvent,
        "conversation.item.input_audio_transcription.delta": ConversationItemInputAudioTranscriptionDeltaEvent,
        COMPLETED: ConversationItemInputAudioTranscriptionCompletedEvent,
        "error": RealtimeErrorEvent,
    }
    events = await stream(ctc, fixture_clips("small")["short"], 16000, 5)
    async with websockets.connect(ctc.ws_url, additional_headers=AUTH) as ws:
        await recv(ws, "session.created")
        await ws.send("{")
        events.append(json.loads(await ws.recv()))
    for event in events:
        if event["type"] in shapes:
            shapes[event["type"]].model_validate(event)  # strict validation of every required field


async def test_the_older_transcription_session_update_works_end_to_end(ctc: LiveServer) -> None:
    tiny = fixture_clips("small")["tiny"]
    ulaw = _ulaw_encode(tiny)
    async with websockets.connect(ctc.ws_url, additional_headers=AUTH) as ws:
        await recv(ws, "session.created")
        legacy = {"input_audio_format": "g711_ulaw", "turn_detection": None}
        await ws.send(json.dumps({"type": "transcription_session.update", "session": legacy}))
        updated = json.loads(await ws.recv())
        assert (updated["type"], updated["session"]["input_audio_format"]) == (
            "transcription_session.updated",
            "g711_ulaw",
        )
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(ulaw).decode()}))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        done = (await recv(ws))[-1]
    assert done["usage"]["seconds"] == pytest.approx(len(ulaw) / 8000, abs=0.002)


def _ulaw_encode(samples: np.ndarray) -> bytes:
    """16 kHz int16 -> 8 kHz G.711 mu-law (the test's own encoder: every other sample, the standard table)."""
    x = samples[::2].astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


# -- limits ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tight_server() -> Iterator[LiveServer]:
    with live_asr(
        fixture_model("small"),
        live_max_streams=2,
        realtime_idle_timeout_s=1.0,
        realtime_max_outbox_events=8,
        max_concurrency=4,
        realtime_sessions_per_slot=1,
    ) as s:
        yield s


@pytest.fixture
async def tight(tight_server: LiveServer) -> LiveServer:
    """The tight server once the sessions of the test before are gone: a session is freed when the
    server sees its close, which on a loaded machine comes after the client's close has returned (a
    leftover session would hold one of the two live streams and refuse this test's with 1013)."""
    await _until_empty(tight_server.app.state.realtime)
    return tight_server


async def test_sessions_beyond_the_maximum_are_refused_with_1013_and_capacity_counts_them(tight: LiveServer) -> None:
    async with (
        websockets.connect(tight.ws_url) as a,
        websockets.connect(tight.ws_url) as b,
        websockets.connect(tight.ws_url) as c,
    ):
        await recv(a, "session.created")
        await recv(b, "session.created")
        refused = json.loads(await c.recv())
        assert refused["error"]["code"] == "too_many_sessions"
        with pytest.raises(websockets.ConnectionClosed) as e:
            await c.recv()
        assert e.value.rcvd is not None and e.value.rcvd.code == 1013
        assert httpx.get(tight.url + "/v1/capacity").json()["slots"] == 2  # 4 slots, 2 taken by sessions
        metrics = httpx.get(tight.url + "/metrics").text
        assert "omoai_asr_realtime_sessions_open 2.0" in metrics
        assert 'omoai_asr_realtime_refusals_total{reason="too_many_sessions"} 1.0' in metrics


async def test_an_idle_session_gets_its_text_then_an_error_and_1008(tight: LiveServer) -> None:
    tiny = fixture_clips("small")["tiny"]
    async with websockets.connect(tight.ws_url) as ws:
        # Sent at once, before reading session.created: the 1 s idle clock starts with the session,
        # and a loaded machine may take longer than that to hand session.created to this client.
        await ws.send(json.dumps(config(16000)))
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64(tiny)}))
        events = await recv(ws, "error", timeout=30)
        with pytest.raises(websockets.ConnectionClosed) as e:
            await ws.recv()
    assert events[0]["type"] == "session.created"
    assert [x["type"] for x in events][-2:] == [COMPLETED, "error"]
    assert events[-1]["error"]["code"] == "idle_timeout"
    assert events[-2]["transcript"] == batch(tight, tiny).text  # the uncommitted audio was not lost
    assert e.value.rcvd is not None and e.value.rcvd.code == 1008


async def test_a_client_that_never_reads_is_closed_and_cannot_grow_memory(tight: LiveServer) -> None:
    hub = tight.app.state.realtime
    port = int(tight.url.rsplit(":", 1)[1])
    update = json.dumps(config(16000)).encode()
    with socket.socket() as raw:
        # A client that reads nothing after the handshake, with a small receive buffer.
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", port))
        raw.sendall(
            b"GET /v1/realtime?intent=transcription HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert raw.recv(12) == b"HTTP/1.1 101"
        frame = bytes([0x81, 0xFE]) + len(update).to_bytes(2, "big") + bytes(4) + update  # masked with zeros
        raw.settimeout(0.5)
        sent = 0
        with contextlib.suppress(OSError):  # the server closes the connection: sends fail
            while hub.sessions and sent < 200_000:
                raw.sendall(frame * 50)
                sent += 50
        deadline = time.monotonic() + 20
        while hub.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not hub.sessions
    assert sent < 200_000  # the server ended the session; the client did not just give up
    metrics = httpx.get(tight.url + "/metrics").text
    assert 'omoai_asr_realtime_sessions_ended_total{reason="client_too_slow"} 1.0' in metrics


# -- many sessions --------------------------------------------------------------------------------


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


async def test_a_thousand_sessions_open_and_close_with_flat_memory(ctc: LiveServer) -> None:
    from omoai_asr.realtime.session import RealtimeSession

    async def one() -> None:
        async with websockets.connect(ctc.ws_url, additional_headers=AUTH) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"

    async def rounds(n: int) -> None:
        for _ in range(n):  # 25 at a time: under the replica's maximum of 32
            await asyncio.gather(*(one() for _ in range(25)))

    await rounds(8)  # warm-up: allocator pools, caches
    hub = ctc.app.state.realtime
    tracemalloc.start()
    try:
        heap_before = tracemalloc.get_traced_memory()[0]
        await rounds(16)
        await _until_empty(hub)
        gc.collect()
        heap_grown = (tracemalloc.get_traced_memory()[0] - heap_before) / 2**20
    finally:
        tracemalloc.stop()
    rss_before = _rss_mib()  # untraced from here: tracemalloc's own tables are not in the count
    await rounds(16)
    await _until_empty(hub)
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, RealtimeSession)]
    # Python's heap (every object of the server and the clients) is flat over 400 sessions. The
    # process's RSS is only a coarse check (measured 8-28 MiB over 400 sessions on a shared 2-core
    # box: the C allocator's arenas of the servers' and clients' threads); a leak of any session's
    # decoder state or audio would be far above it.
    assert heap_grown < 1, f"the heap grew {heap_grown:.2f} MiB over 400 sessions"
    rss_grown = _rss_mib() - rss_before
    assert rss_grown < 64, f"RSS grew {rss_grown:.1f} MiB over 400 sessions"


async def _until_empty(hub: Any) -> None:
    deadline = time.monotonic() + 10
    while hub.sessions and time.monotonic() < deadline:  # the server sees the last closes
        await asyncio.sleep(0.05)
    assert not hub.sessions
