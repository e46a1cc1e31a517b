"""Replicas of a service on loopback, each published as one endpoint of a Service: a real service
process behind a :class:`ReplicaProxy` that stands for the pod's network. The proxy forwards every
request, counts what each replica was asked and answered (and the most it had in flight at once),
can hold requests at the door (so a kill lands mid-request every time), and ``kill()`` is the pod
dying: the process is killed, every open connection is reset, the port stops listening.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web

from tests.support.operator_services import ForwardingProxy, answer
from tests.support.processes import ServerProcess, free_port, start_process


class ReplicaProxy(ForwardingProxy):
    def __init__(self, upstream: str, name: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.name = name
        self.in_flight = 0
        self.max_in_flight = 0
        self.asked: Counter[str] = Counter()  # audio_url -> requests received
        self.answered: Counter[str] = Counter()  # audio_url -> 200 answers sent
        self.held: set[str] = set()  # audio_urls waiting at the door now
        self.gate = threading.Event()
        self.gate.set()
        self.dead = False
        self._open: set[asyncio.Transport] = set()
        super().__init__(name)

    # -- controls (any thread) -------------------------------------------------------------------
    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def kill(self, proc: ServerProcess) -> None:
        """The pod dies: its process is killed, its open connections reset, its port closed."""
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(15)
        self._lt.run(self._die())

    async def _die(self) -> None:
        self.dead = True
        for t in list(self._open):
            t.abort()
        await self._stop_listening()

    def close(self) -> None:
        self.release()
        super().close()

    @property
    def ok(self) -> int:
        return sum(self.answered.values())

    # -- proxying --------------------------------------------------------------------------------
    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        body = await request.read()
        audio = None
        if request.path == "/v1/transcriptions" and body:
            audio = json.loads(body).get("audio_url")
            self.asked[audio] += 1
        transport = request.transport
        if transport is not None:
            self._open.add(transport)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if not self.gate.is_set() and audio is not None:
                self.held.add(audio)
            while not self.gate.is_set() and not self.dead:
                await asyncio.sleep(0.02)
            if self.dead and transport is not None:
                transport.abort()
                raise ConnectionResetError("the pod is gone")
            status, data, ctype = await self.forward(request, self.upstream, body)
            if audio is not None and status == 200:
                self.answered[audio] += 1
            return answer(status, data, ctype)
        except aiohttp.ClientError:
            if transport is not None:
                transport.abort()  # the process died under the request: the connection breaks
            raise
        finally:
            self.in_flight -= 1
            if transport is not None:
                self._open.discard(transport)


@dataclass
class Replica:
    name: str
    proc: ServerProcess
    proxy: ReplicaProxy

    @property
    def port(self) -> int:
        return self.proxy.port

    def kill(self) -> None:
        self.proxy.kill(self.proc)


def start_asr_replicas(
    names: list[str], model: Path, file_root: Path, logs: Path, *, max_concurrency: int
) -> list[Replica]:
    """Real ``omoai_asr serve`` processes (all started before any is waited for), each behind its proxy."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMOAI_")}
    env |= {"OMOAI_TORCH_THREADS": "1", "OMOAI_LOG_LEVEL": "WARNING"}
    started: list[tuple[str, ServerProcess, int]] = []
    for name in names:
        port = free_port()
        proc = start_process(
            [
                sys.executable,
                "-m",
                "omoai_asr",
                "serve",
                "--model",
                str(model),
                "--port",
                str(port),
                "--file-root",
                str(file_root),
                "--max-concurrency",
                str(max_concurrency),
            ],
            name=f"omoai-asr {name}",
            log=logs / f"asr-{name}.log",
            env=env,
        )
        started.append((name, proc, port))
    out: list[Replica] = []
    for name, proc, port in started:
        proc.wait_ready(f"http://127.0.0.1:{port}/readyz", timeout_s=240)
        out.append(Replica(name, proc, ReplicaProxy(f"http://127.0.0.1:{port}", f"replica-{name}")))
    return out


def write_model(directory: Path) -> Path:
    import subprocess

    subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import sys; from omoai_asr.engine.testing import write_random_checkpoint; "
                "write_random_checkpoint(sys.argv[1])"
            ),
            str(directory),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    return directory


def scrape_value(text: str, name: str, **labels: Any) -> float:
    """The value of the sample ``name`` with exactly ``labels`` in a Prometheus text scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"{name}{labels} not in the scrape")
