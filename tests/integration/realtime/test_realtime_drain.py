"""SIGTERM to a real ``omoai-asr serve`` process with an open realtime session: the session gets
every item's final text (the buffer's uncommitted audio included), then an ``error`` event
``shutting_down`` and close code 1012 (reconnect); the process then exits."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys

import numpy as np
import pytest
import websockets
from omoai_asr.protocol import TranscriptionOptions
from omoai_asr.settings import AsrSettings

from tests.support.processes import free_port, running_process
from tests.support.realtime import fixture_clips, fixture_model

pytestmark = pytest.mark.timeout(300)


def b64(samples: np.ndarray) -> str:
    return base64.b64encode(samples.astype("<i2").tobytes()).decode()


async def test_sigterm_sends_the_final_text_then_closes_with_1012(tmp_path) -> None:
    import torch
    from omoai_asr.engine import ChunkFormerEngine
    from omoai_gpu.memory import MemoryPolicy
    from prometheus_client import CollectorRegistry

    model = fixture_model("small")
    short = fixture_clips("small")["short"]
    first, rest = short[: 3 * 16000], short[3 * 16000 :]
    engine = ChunkFormerEngine.load(
        model, MemoryPolicy(torch.device("cpu"), torch.float32, registry=CollectorRegistry())
    )
    settings = AsrSettings()
    options = TranscriptionOptions(total_batch_duration=settings.realtime_total_batch_duration).decode_options(settings)
    want = [engine.transcribe(first, options).text, engine.transcribe(rest, options).text]

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMOAI_")}
    env.update(OMOAI_TORCH_THREADS="1", OMOAI_DIARIZATION_BACKEND="off", OMOAI_SHUTDOWN_TIMEOUT_S="30")
    cmd = [sys.executable, "-m", "omoai_asr", "serve", "--model", str(model), "--port", str(port)]
    url = f"ws://127.0.0.1:{port}/v1/realtime?intent=transcription"
    with running_process(
        cmd, name="omoai-asr serve", log=tmp_path / "asr.log", env=env, ready_url=f"http://127.0.0.1:{port}/readyz"
    ) as proc:
        async with websockets.connect(url) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
            update = {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}
            await ws.send(json.dumps({"type": "session.update", "session": update}))
            td = {
                "type": "session.update",
                "session": {"type": "transcription", "audio": {"input": {"turn_detection": None}}},
            }
            await ws.send(json.dumps(td))
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64(first)}))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64(rest)}))  # never committed
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": "?"}))  # its error: all was read
            events = []
            while not events or events[-1]["type"] != "error":
                events.append(json.loads(await ws.recv()))
            proc.popen.send_signal(signal.SIGTERM)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    events.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        completed = [e["transcript"] for e in events if e["type"].endswith("transcription.completed")]
        assert completed == want
        assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "shutting_down"
        assert "draining" in proc.logs()
        assert proc.popen.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it drained on
