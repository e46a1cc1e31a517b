"""Real processes on loopback for the ASR service tests: ``omoai-asr serve`` with a tiny random
checkpoint, a media server on 127.0.0.2 (so 127.0.0.1 stays a refused address), and real media
made with espeak-ng, sox and ffmpeg. Every process started here is stopped here.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.processes import free_port, running_process

PHRASES = [
    "xin chào các bạn",
    "hôm nay chúng ta nói về trí tuệ nhân tạo",
    "thời tiết Hà Nội rất đẹp",
    "cảm ơn bạn đã lắng nghe",
]


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


@dataclass
class AsrServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 120), **kw)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def asr_server(model: Path, workdir: Path, **env: str) -> Iterator[AsrServer]:
    """``python -m omoai_asr serve`` on a free port; waits for /readyz; always stopped."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OMOAI_")}
    full_env.update({"OMOAI_TORCH_THREADS": "1", "OMOAI_LOG_LEVEL": "INFO", **env})
    with running_process(
        [sys.executable, "-m", "omoai_asr", "serve", "--model", str(model), "--port", str(port)],
        name="omoai-asr serve",
        log=workdir / f"asr-{port}.log",
        env=full_env,
        ready_url=url + "/readyz",
        timeout_s=180,
    ) as proc:
        yield AsrServer(url, proc.popen, proc.log)


class _MediaHandler(http.server.SimpleHTTPRequestHandler):
    """Files from a directory, plus /redirect?to=URL answering 302."""

    def do_GET(self) -> None:
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a fetch refused mid-stream (size limit) resets the connection; that is the point


@dataclass
class MediaServer:
    url: str
    root: Path


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real speech clips (espeak-ng, Vietnamese voice) as 16 kHz mono WAV."""
    for tool in ("espeak-ng", "ffmpeg", "sox"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup.sh installs it)")
    d = tmp_path_factory.mktemp("media")
    for i, text in enumerate(PHRASES):
        raw = d / f"raw{i}.wav"
        run(["espeak-ng", "-v", "vi", "-s", str(140 + 10 * i), "-w", str(raw), text])
        run(
            [
                "ffmpeg",
                "-nostdin",
                "-v",
                "error",
                "-y",
                "-i",
                str(raw),
                "-ac",
                "1",
                "-ar",
                "16000",
                str(d / f"clip{i}.wav"),
            ]
        )
        raw.unlink()
    return d


@pytest.fixture(scope="session")
def clips(media_dir: Path) -> list[Path]:
    return [media_dir / f"clip{i}.wav" for i in range(len(PHRASES))]


@pytest.fixture(scope="session")
def media_server(media_dir: Path) -> Iterator[MediaServer]:
    host = "127.0.0.2"
    try:
        httpd = _QuietServer((host, 0), lambda *a: _MediaHandler(*a, directory=str(media_dir)))
    except OSError:
        pytest.skip("cannot bind 127.0.0.2 on this machine")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield MediaServer(f"http://{host}:{httpd.server_address[1]}", media_dir)
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from omoai_asr.engine.testing import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-asr")


@pytest.fixture(scope="session")
def engine(tiny_model: Path):
    """The same checkpoint in this process: what the service's answers must equal."""
    import torch
    from omoai_asr.engine import ChunkFormerEngine
    from omoai_gpu.memory import MemoryPolicy
    from prometheus_client import CollectorRegistry

    torch.set_num_threads(1)
    return ChunkFormerEngine.load(
        tiny_model, MemoryPolicy(torch.device("cpu"), torch.float32, registry=CollectorRegistry())
    )


@pytest.fixture(scope="session")
def server(
    tiny_model: Path, media_server: MediaServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AsrServer]:
    """The shared server: file:// under the media directory, 127.0.0.2 reachable, small limits."""
    with asr_server(
        tiny_model,
        tmp_path_factory.mktemp("asr"),
        OMOAI_FILE_ROOT=str(media_server.root),
        OMOAI_URL_ALLOWED_NETWORKS="127.0.0.2/32",
        OMOAI_MAX_REQUEST_BYTES=str(3 * 1024 * 1024),
        OMOAI_MAX_URL_BYTES=str(3 * 1024 * 1024),
        OMOAI_MAX_AUDIO_DURATION_S="60",
        OMOAI_BATCH_WINDOW_MS="30",
        OMOAI_SERVED_MODEL_NAME="chunkformer-tiny",
    ) as s:
        yield s
