"""Real server processes on loopback for the integration tests: a free port, a process started
with its output in a log file, a wait until its readiness URL answers 200 (or it exits, or a
deadline passes: either raises with the tail of its log), and a stop that always ends it
(terminate, wait, then kill).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

LOG_TAIL_CHARS = 4000  # enough for a traceback, short enough to read in a pytest report


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS picks it); the caller binds it soon after."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A started process whose stdout and stderr go to ``log``."""

    def __init__(self, popen: subprocess.Popen[bytes], log: Path, name: str, *, owns_log: bool = False) -> None:
        self.popen = popen
        self.log = log
        self.name = name
        self.owns_log = owns_log  # a temporary log, removed when the process is stopped

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, url: str, *, timeout_s: float, interval_s: float = 0.3) -> None:
        """Return once ``GET url`` answers 200; raise if the process exits or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.logs()[-LOG_TAIL_CHARS:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=5).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready in {timeout_s}s:\n{self.logs()[-LOG_TAIL_CHARS:]}")
            time.sleep(interval_s)


def start_process(
    cmd: Sequence[str],
    *,
    name: str,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ServerProcess:
    """Start ``cmd`` (``env`` None: this process's environment) with its output in ``log``, or in
    a temporary file removed by :func:`stop_processes` when ``log`` is None."""
    owns_log = log is None
    if log is None:
        fd, tmp = tempfile.mkstemp(prefix=name.replace(" ", "-") + "-", suffix=".log")
        os.close(fd)
        log = Path(tmp)
    with log.open("wb") as fh:  # the child keeps its own descriptor
        popen = subprocess.Popen(list(cmd), stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    return ServerProcess(popen, log, name, owns_log=owns_log)


def stop_processes(*procs: ServerProcess, wait_s: float = 30.0) -> None:
    """Terminate every process still running, then wait for each; kill any that outlives ``wait_s``."""
    for p in procs:
        if p.popen.poll() is None:
            p.popen.terminate()
    for p in procs:
        try:
            p.popen.wait(wait_s)
        except subprocess.TimeoutExpired:
            p.popen.kill()
            p.popen.wait(10)
        if p.owns_log:
            p.log.unlink(missing_ok=True)


@contextlib.contextmanager
def running_process(
    cmd: Sequence[str],
    *,
    name: str,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ready_url: str | None = None,
    timeout_s: float = 180.0,
) -> Iterator[ServerProcess]:
    """:func:`start_process`, ready at ``ready_url`` (when given) before yielding; always stopped."""
    proc = start_process(cmd, name=name, log=log, env=env, cwd=cwd)
    try:
        if ready_url is not None:
            proc.wait_ready(ready_url, timeout_s=timeout_s)
        yield proc
    finally:
        stop_processes(proc)
