"""A decode never outlives its request nor escapes admission: a client that hangs up has its
ffmpeg killed (and its slot held until ffmpeg has exited), and a decode over its time limit is a
clean 422. Start-up failures of both services exit 2 with one clear line and no traceback.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.security.harness import TOKEN, Server, asr_server
from tests.support.processes import free_port

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def server(asr_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with asr_server(
        asr_model,
        tmp_path_factory.mktemp("decodes"),
        OMOAI_MAX_AUDIO_DURATION_S="36000",
        OMOAI_DECODE_TIMEOUT_S="1.5",
        OMOAI_MAX_CONCURRENCY="2",
    ) as s:
        yield s


def _in_flight(server: Server) -> float:
    m = re.search(r"^omoai_asr_requests_in_flight ([0-9.e+-]+)$", httpx.get(server.url + "/metrics").text, re.MULTILINE)
    return float(m.group(1)) if m else -1.0


def test_a_client_that_hangs_up_has_its_ffmpeg_killed_before_its_slot_is_freed(server: Server, media: Path):
    bomb = (media / "bomb.flac").read_bytes()
    sock = socket.create_connection((server.host, server.port))
    sock.sendall(
        b"POST /v1/transcriptions HTTP/1.1\r\nhost: x\r\ncontent-type: audio/flac\r\nauthorization: Bearer "
        + TOKEN.encode()
        + b"\r\ncontent-length: "
        + str(len(bomb)).encode()
        + b"\r\n\r\n"
        + bomb
    )
    deadline = time.monotonic() + 20
    while not server.children("ffmpeg") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.children("ffmpeg"), "ffmpeg never started"
    sock.close()
    hung_up = time.monotonic()
    while time.monotonic() < hung_up + 10:
        in_flight = _in_flight(server)  # read first: a freed slot means ffmpeg had already exited
        alive = server.children("ffmpeg")
        assert not (alive and in_flight == 0), "the slot was freed while ffmpeg still ran"
        if not alive and in_flight == 0:
            break
        time.sleep(0.05)
    assert not server.children("ffmpeg") and _in_flight(server) == 0
    assert time.monotonic() - hung_up < 3.0
    assert "Traceback" not in server.logs()


def test_decodes_of_clients_that_hung_up_never_exceed_the_concurrency_limit(server: Server, media: Path):
    bomb = (media / "bomb.flac").read_bytes()
    head = (
        b"POST /v1/transcriptions HTTP/1.1\r\nhost: x\r\ncontent-type: audio/flac\r\nauthorization: Bearer "
        + TOKEN.encode()
        + b"\r\ncontent-length: "
        + str(len(bomb)).encode()
        + b"\r\n\r\n"
    )
    most = 0
    for _ in range(3):  # waves of four clients that send a bomb and hang up; the limit is 2
        socks = []
        for _ in range(4):
            sock = socket.create_connection((server.host, server.port))
            sock.sendall(head + bomb)
            socks.append(sock)
        end = time.monotonic() + 0.6
        while time.monotonic() < end:
            most = max(most, len(server.children("ffmpeg")))
            time.sleep(0.02)
        for sock in socks:
            sock.close()
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            most = max(most, len(server.children("ffmpeg")))
            time.sleep(0.02)
    assert most <= 2, f"{most} ffmpeg processes at once with a limit of 2"
    deadline = time.monotonic() + 10
    while (server.children("ffmpeg") or _in_flight(server)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not server.children("ffmpeg") and _in_flight(server) == 0


def test_a_decode_over_its_time_limit_is_a_clean_422(server: Server, media: Path):
    with server.client() as http:
        started = time.monotonic()
        r = http.post("/v1/transcriptions", files={"file": ("bomb.flac", (media / "bomb.flac").read_bytes())})
        elapsed = time.monotonic() - started
    assert r.status_code == 422 and r.json()["error"]["code"] == "decode_timeout", r.text
    assert elapsed < 10
    assert not server.children("ffmpeg")
    assert "Traceback" not in server.logs()


# -- start-up failures -----------------------------------------------------------------------------


def _run(cmd: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
        "OMOAI_TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, check=False)


def _asr(*args: str) -> list[str]:
    return [sys.executable, "-m", "omoai_asr", "serve", *args]


def _llm(*args: str) -> list[str]:
    return [
        str(Path(sys.executable).with_name("omoai-llm")),
        "serve",
        "--backend",
        "transformers",
        "--device",
        "cpu",
        *args,
    ]


@pytest.fixture
def busy_port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _bad_model(tmp_path: Path) -> Path:
    d = tmp_path / "bad-model"
    d.mkdir()
    (d / "config.json").write_text("{ this is not json")
    (d / "config.yaml").write_text(": : not yaml [")
    (d / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    return d


@pytest.mark.parametrize("service", ["asr", "llm"])
@pytest.mark.parametrize("failure", ["missing-model", "bad-model", "port-in-use"])
def test_start_up_failures_exit_2_with_one_clear_message_and_no_traceback(
    service: str, failure: str, tmp_path: Path, busy_port: int, asr_model: Path, llm_model: Path
):
    port = busy_port if failure == "port-in-use" else free_port()
    model = {
        "missing-model": tmp_path / "no-such-model",
        "bad-model": _bad_model(tmp_path),
        "port-in-use": asr_model if service == "asr" else llm_model,
    }[failure]
    build = _asr if service == "asr" else _llm
    proc = _run(build("--model", str(model), "--host", "127.0.0.1", "--port", str(port)), tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "Traceback" not in output and "AttributeError" not in output, output
    errors = [ln for ln in output.splitlines() if " ERROR " in ln or re.match(r"omoai-\w+: error:", ln)]
    assert 1 <= len(errors) <= 2, output  # the one message (and at most the CLI's own summary line)
    if failure == "port-in-use":
        assert f"cannot listen on 127.0.0.1:{port}" in output, output
