"""Graceful shutdown of a real ``omoai-asr serve`` process: SIGTERM during a long request lets that
request finish, while new requests (and /readyz) get a retryable 503 with Retry-After; the
process then exits by itself. The long request is a real one: its audio_url is served by a media
server that trickles the clip out over a few seconds."""

from __future__ import annotations

import http.server
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import asr_server
from omoai_asr.engine import DecodeOptions
from omoai_audio import decode_audio

from tests.support.processes import free_port

pytestmark = pytest.mark.timeout(240)

TRICKLE_S = 4.0
DEFAULT = DecodeOptions()


class _Trickle(http.server.BaseHTTPRequestHandler):
    """GET /slow.wav: the clip in 8 pieces, TRICKLE_S seconds in all; sets `started` first."""

    clip: bytes = b""
    started = threading.Event()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Content-Length", str(len(self.clip)))
        self.end_headers()
        type(self).started.set()
        step = -(-len(self.clip) // 8)
        for i in range(0, len(self.clip), step):
            self.wfile.write(self.clip[i : i + step])
            self.wfile.flush()
            time.sleep(TRICKLE_S / 8)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def trickle_url(clips: list[Path]) -> Iterator[str]:
    _Trickle.clip = clips[1].read_bytes()
    _Trickle.started = threading.Event()
    try:
        httpd = http.server.ThreadingHTTPServer(("127.0.0.2", 0), _Trickle)
    except OSError:
        pytest.skip("cannot bind 127.0.0.2 on this machine")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.2:{httpd.server_address[1]}/slow.wav"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_sigterm_finishes_the_in_flight_request_and_refuses_new_ones_with_retry_after(
    tiny_model: Path, tmp_path: Path, trickle_url: str, engine, clips: list[Path]
) -> None:
    with asr_server(
        tiny_model,
        tmp_path,
        OMOAI_URL_ALLOWED_NETWORKS="127.0.0.2/32",
        OMOAI_SERVED_MODEL_NAME="chunkformer-tiny",
        OMOAI_SHUTDOWN_TIMEOUT_S="60",
    ) as server:
        result: dict[str, httpx.Response] = {}

        def long_request() -> None:
            with server.client() as http:
                result["r"] = http.post("/v1/transcriptions", json={"audio_url": trickle_url})

        worker = threading.Thread(target=long_request)
        worker.start()
        assert _Trickle.started.wait(30), "the service never fetched the audio"
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the signal is handled on the server's next tick

        with server.client() as http:
            refused = http.post("/v1/transcriptions", json={"audio_url": trickle_url})
            ready = http.get("/readyz")
            alive = http.get("/healthz")
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["retryable"] is True
        assert ready.status_code == 503, "the kubelet must see the pod as not ready"
        assert alive.status_code == 200

        worker.join(60)
        assert not worker.is_alive()
        r = result["r"]
        assert r.status_code == 200, r.text
        assert time.monotonic() - started < TRICKLE_S + 30
        want = engine.transcribe(decode_audio(clips[1]).samples, DEFAULT).model_copy(
            update={"model": "chunkformer-tiny"}
        )
        assert r.json() == want.model_dump(exclude_none=True), "the drained request got its whole transcript"
        # Nothing in flight any more: the server stops on its own, well before the 60 s timeout.
        server.process.wait(timeout=30)
    assert "draining 1 in-flight request(s)" in server.logs()


def test_a_model_that_cannot_load_exits_with_its_error_and_nothing_else(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("OMOAI_")}
    env.update({"OMOAI_TORCH_THREADS": "1", "OMOAI_LOG_FORMAT": "text", "HF_HUB_OFFLINE": "1"})
    missing = tmp_path / "no-such-model"
    port = str(free_port())
    proc = subprocess.run(
        [sys.executable, "-m", "omoai_asr", "serve", "--model", str(missing), "--port", port],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "cannot serve" in out and "no-such-model" in out, out[-3000:]
    assert "AttributeError" not in out, "shutting down after a failed load must not raise"
    assert "Traceback" not in out, out[-3000:]
