"""The ASR app with a real checkpoint on a real uvicorn server on loopback, in a thread of the test
process (the realtime tests open hundreds of sessions: a thread keeps them fast), and the shared
fixtures' checkpoints and audio (CTC and transducer) read through the engine tests' helpers.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from tests.support.processes import free_port


def fixture_model(fixture: str) -> Path:
    from tests.unit.asr.conftest import FIXTURES

    return FIXTURES / fixture / "model"


def fixture_clips(fixture: str) -> dict[str, Any]:
    """Every audio clip of a shared fixture: name -> int16 samples at 16 kHz."""
    from tests.unit.asr.conftest import FIXTURES, read_wav

    return {p.stem: read_wav(p) for p in sorted((FIXTURES / fixture / "audio").glob("*.wav"))}


@dataclass
class LiveServer:
    url: str
    app: Any
    server: uvicorn.Server

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/v1/realtime?intent=transcription"


@contextlib.contextmanager
def live_asr(model: Path, **settings: Any) -> Iterator[LiveServer]:
    """``create_app`` on uvicorn (websockets implementation) on a free loopback port; always stopped."""
    from omoai_asr.app import create_app
    from omoai_asr.realtime.route import max_frame_bytes
    from omoai_asr.settings import AsrSettings

    port = free_port()
    s = AsrSettings(model=str(model), port=port, torch_threads=1, warmup=False, diarization_backend="off", **settings)
    app = create_app(s)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws="auto", ws_max_size=max_frame_bytes(s)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the ASR app did not get ready")
            time.sleep(0.1)
        yield LiveServer(url, app, server)
    finally:
        server.should_exit = True
        thread.join(30)
