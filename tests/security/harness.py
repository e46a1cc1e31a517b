"""The security suite's real parts: ``omoai-asr serve`` and ``omoai-llm serve`` processes on
loopback with small limits and a token, raw-socket helpers for slow and oversized clients, a
``/healthz`` sampler and the server's peak RSS from ``/proc``. Every process started here is
stopped here. (A module of its own, not conftest.py: several test directories have a conftest,
and ``from conftest import`` would pick whichever pytest loaded last.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import httpx
import pytest

from tests.support.processes import free_port, running_process

TOKEN = "security-suite-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}
MiB = 1024 * 1024


def need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup.sh installs it)")


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)


@dataclass
class Server:
    url: str
    host: str
    port: int
    pid: int
    log: Path

    def client(self, **kw) -> httpx.Client:
        headers = {**AUTH, **kw.pop("headers", {})}
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 120), headers=headers, **kw)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def peak_rss(self) -> int:
        """VmHWM: the most resident memory the server process has ever had, in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc status")

    def children(self, name: str) -> list[int]:
        """Pids of the server's child processes called ``name`` (e.g. ffmpeg)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if ppid == self.pid and comm == name:
                found.append(int(entry.name))
        return found

    def connect(self, timeout: float = 30.0) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        return sock


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMOAI_")}
    env.update({"OMOAI_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1", "OMOAI_LOG_LEVEL": "INFO", **extra})
    return env


@contextlib.contextmanager
def asr_server(model: Path, workdir: Path, **env: str) -> Iterator[Server]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = {"OMOAI_API_TOKEN": TOKEN, **env}
    with running_process(
        [sys.executable, "-m", "omoai_asr", "serve", "--model", str(model), "--port", str(port)],
        name="omoai-asr serve",
        log=workdir / f"asr-{port}.log",
        env=_env(settings),
        ready_url=url + "/readyz",
        timeout_s=180,
    ) as proc:
        yield Server(url, "127.0.0.1", port, proc.popen.pid, proc.log)


@contextlib.contextmanager
def llm_server(model: Path, workdir: Path, **env: str) -> Iterator[Server]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    exe = Path(sys.executable).with_name("omoai-llm")
    settings = {"OMOAI_API_TOKEN": TOKEN, **env}
    with running_process(
        [
            str(exe),
            "serve",
            "--backend",
            "transformers",
            "--model",
            str(model),
            "--device",
            "cpu",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        name="omoai-llm serve",
        log=workdir / f"llm-{port}.log",
        env=_env(settings),
        ready_url=url + "/readyz",
        timeout_s=180,
    ) as proc:
        yield Server(url, "127.0.0.1", port, proc.popen.pid, proc.log)


@dataclass
class HealthSampler:
    """GET /healthz every ``interval_s`` on its own connection, recording each latency."""

    url: str
    interval_s: float = 0.05
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    ok = http.get(self.url + "/healthz").status_code == 200
                except httpx.HTTPError as e:
                    ok = False
                    self.failures.append(repr(e))
                self.latencies.append(time.perf_counter() - started)
                if not ok and not self.failures:
                    self.failures.append("non-200 /healthz")
                self._stop.wait(self.interval_s)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    @property
    def worst(self) -> float:
        return max(self.latencies) if self.latencies else float("inf")


def read_response(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes or ``timeout`` passes (b"" for neither)."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and _complete(data):
                break
    return data


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else 0
