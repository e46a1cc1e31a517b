"""The whole platform on one machine, under load and faults: what a cluster would run, started as
real processes on loopback, driven the way users drive it, checked for what was lost or left.

Started here: the Kubernetes API emulator serving the chart's CRD; two or more ASR replicas (a
tiny random ChunkFormer checkpoint) behind a round-robin balancer (the Service; see
:mod:`tests.system.balancer`) and a fault proxy; the LLM service (openai backend against a fake
chat server) behind a fault proxy; the operator (``omoai operator``, a real process that is killed
and restarted); moto's S3 server behind a TCP link that can be cut; a static http server for URL
sources; and Prometheus scraping every component.

Phases: ``load`` (N jobs at once under capacity limits; the queue order is checked while the ASR
slots are held; faults injected while the rest runs: an ASR replica killed mid-request, 503s for a
while, S3 cut off for a while, an input corrupted, jobs deleted while they run), ``restarts`` (the
operator killed twice mid-job, the LLM service killed mid-summary), ``tour`` (every malformed spec
and audio of the corpora through kubectl), then the leak checks and the Prometheus comparison.

``python -m tests.system.harness --jobs 100`` is ``make system``; the test suite runs a short form.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import wave
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp.web
import httpx
import yaml

from tests.integration.operator import operator_harness
from tests.integration.operator.operator_harness import _NAMES, EVENTS, NAMESPACES, SECRETS, TJ
from tests.support.emulator import Emulator, EmulatorThread, Kind
from tests.support.operator_services import FakeOpenAI, FaultProxy
from tests.support.processes import ServerProcess, free_port, start_process, stop_processes
from tests.system.balancer import Balancer
from tests.system.links import StaticFiles, TcpLink

ROOT = Path(__file__).resolve().parents[2]

NS = "default"
CLAIM = "omoai-data"
FORMATS = ("json", "txt", "srt", "vtt", "md")
SAMPLE = ROOT / "samples" / "xin-chao.wav"
S3_IN, S3_OUT, SECRET = "omoai-in", "omoai-out", "s3-creds"
NO_POST = {"punctuation": False, "summary": "none", "topics": False}
PY = sys.executable


def log(msg: str) -> None:
    print(f"[system {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def wait_until(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(interval)


# -- audio ---------------------------------------------------------------------------------------
def _pcm(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        return w.readframes(w.getnframes()), w.getframerate()


def _write_wav(path: Path, pcm: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def make_audio(d: Path) -> dict[str, float]:
    """Clips of three durations cut from (or looped over) the sample; returns name -> seconds."""
    pcm, rate = _pcm(SAMPLE)
    clips = {"short.wav": pcm[: rate * 2 * 2], "medium.wav": pcm, "long.wav": pcm * 2}
    d.mkdir(parents=True, exist_ok=True)
    for name, data in clips.items():
        _write_wav(d / name, data, rate)
    return {n: len(b) / 2 / rate for n, b in clips.items()}


def bad_audio(d: Path) -> dict[str, bytes]:
    """The ASR service's bad-input corpus (tests/integration/asr_service), made without ffmpeg."""
    pcm, rate = _pcm(SAMPLE)
    one_ms = d / "one_ms.wav"
    _write_wav(one_ms, pcm[: 16 * 2], rate)
    too_long = d / "too_long.wav"
    _write_wav(too_long, pcm * 10, rate)  # 70 s; the replicas allow 60
    absurd = b"RIFF" + struct.pack("<I", 0xFFFFFFF0) + b"WAVE" + b"fmt " + struct.pack("<I", 0x7FFFFFF0) + pcm[:4000]
    return {
        "zero-bytes": b"",
        "text-renamed-wav": b"Meeting notes, not audio.\n" * 20,
        "truncated-wav": SAMPLE.read_bytes()[:300],
        "absurd-header-lengths": absurd,
        "one-ms": one_ms.read_bytes(),
        "over-max-duration": too_long.read_bytes(),
    }


# -- the fake chat server with a slow summary (to kill the LLM service mid-summary) ----------------
class SlowSummaryOpenAI(FakeOpenAI):
    def __init__(self) -> None:
        self.summary_delay_s = 0.0
        super().__init__()

    async def _chat(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        body = await request.json()
        system = " ".join(m["content"] for m in body["messages"] if m["role"] == "system")
        if self.summary_delay_s and '"title"' in system:
            await asyncio.sleep(self.summary_delay_s)

        async def again() -> Any:
            return body

        request.json = again  # type: ignore[method-assign]
        return await super()._chat(request)


# -- the platform --------------------------------------------------------------------------------
# The operator tests' EndpointSlice kind (validated against Kubernetes' schema) where they have one.
ENDPOINTSLICES = getattr(operator_harness, "ENDPOINTSLICES", None) or Kind(
    "discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"
)


def operator_follows_endpoints() -> bool:
    """Whether this operator reaches each replica through its Service's EndpointSlices (issue 11);
    else it calls the Service URL and a loopback balancer stands for the Service."""
    from omoai_operator.settings import OperatorSettings

    return "endpoint_discovery" in OperatorSettings.model_fields


class Doors:
    """The ASR Service as the operator reaches it: one fault proxy in front of the balancer
    (Service mode), or one per replica, each published as an endpoint (endpoint mode)."""

    def __init__(self, proxies: list[FaultProxy]) -> None:
        self.proxies = proxies

    def hold(self) -> None:
        for p in self.proxies:
            p.hold()

    def release(self) -> None:
        for p in self.proxies:
            p.release()

    def fail(self, status: int) -> None:
        for p in self.proxies:
            p.fail(status)

    def clear(self) -> None:
        for p in self.proxies:
            p.clear()

    def count(self, path: str) -> int:
        return sum(p.count(path) for p in self.proxies)

    def answered(self, path: str, status: int) -> int:
        return sum(p.responses[(path, status)] for p in self.proxies)

    @property
    def requests(self) -> list[tuple[float, str, dict[str, Any] | None]]:
        return [r for p in self.proxies for r in p.requests]

    def close(self) -> None:
        for p in self.proxies:
            p.close()


@dataclass
class Faults:
    injected: list[str] = field(default_factory=list)
    survived: list[str] = field(default_factory=list)

    def note(self, name: str) -> None:
        log(f"fault: {name}")
        self.injected.append(name)


class Platform:
    def __init__(
        self,
        work: Path,
        *,
        asr_replicas: int = 2,
        asr_slots: int = 4,
        llm_slots: int = 4,
        endpoints: bool | None = None,
    ) -> None:
        self.work = work
        self.endpoints = operator_follows_endpoints() if endpoints is None else endpoints
        self.shared = work / "shared"
        self.tmp_root = work / "tmp"
        self.logs = work / "logs"
        for d in (self.shared, self.tmp_root, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.asr_replicas = asr_replicas
        self.asr_slots, self.llm_slots = asr_slots, llm_slots
        self.procs: dict[str, ServerProcess] = {}
        self.closers: list[Callable[[], None]] = []
        self.operator_starts = 0
        self.incarnations: Counter[str] = Counter()
        self.killed_tmp: list[Path] = []  # temporary directories of killed processes

    # -- start ------------------------------------------------------------------------------------
    def start(self) -> None:
        self.durations = make_audio(self.shared / "audio")
        # Kubernetes API
        emu = Emulator()
        emu.add_kind(TJ, shortnames=tuple(_NAMES.get("shortNames", ())))
        for k in (EVENTS, NAMESPACES, SECRETS, ENDPOINTSLICES):
            emu.add_kind(k)
        self.emu = EmulatorThread(emu).start()
        self.closers.append(self.emu.stop)
        self.kapi = httpx.Client(base_url=self.emu.url, timeout=15)
        self.kapi.post("/api/v1/namespaces", json={"metadata": {"name": NS}}).raise_for_status()
        self.kubeconfig = self.work / "kubeconfig"
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "system",
                    "clusters": [{"name": "system", "cluster": {"server": self.emu.url}}],
                    "users": [{"name": "user", "user": {"token": "system-token"}}],
                    "contexts": [{"name": "system", "context": {"cluster": "system", "user": "user", "namespace": NS}}],
                }
            )
        )
        # S3 (moto) behind a link that can be cut
        self.s3_port = free_port()
        self._start(
            "s3", [PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.s3_port)], "/moto-api/", port=self.s3_port
        )
        self.s3_link = TcpLink(self.s3_port, "s3-link")
        self.closers.append(self.s3_link.close)
        self._s3_setup()
        self.static = StaticFiles(self.shared)
        self.closers.append(self.static.close)
        # ASR replicas, their Service, the LLM service
        model = self.work / "asr-model"
        subprocess.run(
            [
                PY,
                "-c",
                (
                    "import sys; from omoai_asr.engine.testing import write_random_checkpoint; "
                    "write_random_checkpoint(sys.argv[1])"
                ),
                str(model),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        self.model = model
        self.asr_ports = [free_port() for _ in range(self.asr_replicas)]
        for i in range(self.asr_replicas):
            self.start_asr(i, wait=False)
        self.fake_llm = SlowSummaryOpenAI()
        self.closers.append(self.fake_llm.close)
        self.llm_port = free_port()
        self.start_llm(wait=False)
        for i in range(self.asr_replicas):
            self.procs[f"asr-{i}"].wait_ready(f"http://127.0.0.1:{self.asr_ports[i]}/readyz", timeout_s=300)
        self.procs["llm"].wait_ready(f"http://127.0.0.1:{self.llm_port}/readyz", timeout_s=300)
        urls = [f"http://127.0.0.1:{p}" for p in self.asr_ports]
        if self.endpoints:
            # Each replica's own door (its pod network), published as one endpoint of the Service.
            self.balancers = [Balancer([u], name=f"asr-{i}-pod") for i, u in enumerate(urls)]
            self.asr = Doors([FaultProxy(b.url, f"asr-{i}-faults") for i, b in enumerate(self.balancers)])
        else:
            self.balancers = [Balancer(urls)]
            self.asr = Doors([FaultProxy(self.balancers[0].url, "asr-faults")])
        self.closers += [b.close for b in self.balancers]
        self.llm = FaultProxy(f"http://127.0.0.1:{self.llm_port}", "llm-faults")
        self.closers += [self.asr.close, self.llm.close]
        if self.endpoints:
            for i in range(self.asr_replicas):
                self.publish("omoai-asr", f"omoai-asr-{i}", self.asr.proxies[i].port, ready=True)
            self.publish("omoai-llm", "omoai-llm-0", self.llm.port, ready=True)
        # Operator and Prometheus
        self.operator_metrics = free_port()
        self.start_operator()
        self.prom_port = free_port()
        self._start_prometheus()

    def _start(
        self,
        name: str,
        cmd: list[str],
        ready: str | None,
        *,
        port: int,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> ServerProcess:
        base = {k: v for k, v in os.environ.items() if not k.startswith("OMOAI_")}
        # Each incarnation has its own log and its own TMPDIR (a container's /tmp dies with it).
        self.incarnations[name] += 1
        tag = f"{name}.{self.incarnations[name]}"
        tmp = self.tmp_root / tag
        tmp.mkdir(parents=True, exist_ok=True)
        proc = start_process(
            cmd, name=name, log=self.logs / f"{tag}.log", env={**base, **(env or {}), "TMPDIR": str(tmp)}
        )
        proc.tmp = tmp  # type: ignore[attr-defined]
        self.procs[name] = proc
        if wait and ready is not None:
            proc.wait_ready(f"http://127.0.0.1:{port}{ready}", timeout_s=300)
        return proc

    def start_asr(self, i: int, *, wait: bool = True) -> None:
        port = self.asr_ports[i]
        # Replica 0 is a slow one (it waits 1.5 s for a batch to fill): requests stay on it long
        # enough to be cut off by killing it.
        window = "1500" if i == 0 else "10"
        self._start(
            f"asr-{i}",
            [
                PY,
                "-m",
                "omoai_asr",
                "serve",
                "--model",
                str(self.model),
                "--port",
                str(port),
                "--file-root",
                str(self.shared),
                "--threads",
                "1",
                "--max-audio-duration",
                "60",
                "--batch-window-ms",
                window,
            ],
            "/readyz",
            port=port,
            wait=wait,
            env={"OMOAI_ALLOW_PRIVATE_ADDRESSES": "true", "OMOAI_LOG_LEVEL": "WARNING"},
        )

    def start_llm(self, *, wait: bool = True) -> None:
        self._start(
            "llm",
            [
                PY,
                "-m",
                "omoai_llm",
                "serve",
                "--backend",
                "openai",
                "--model",
                FakeOpenAI.MODEL,
                "--openai-base-url",
                self.fake_llm.url,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.llm_port),
            ],
            "/readyz",
            port=self.llm_port,
            wait=wait,
            env={"OMOAI_LOG_LEVEL": "WARNING", "OMOAI_OPENAI_RETRIES": "0"},
        )

    def start_operator(self) -> None:
        self.operator_starts += 1
        env = {
            "KUBECONFIG": str(self.kubeconfig),
            "OMOAI_ASR_URL": self.asr.proxies[0].url,
            "OMOAI_LLM_URL": self.llm.url,
            "OMOAI_VOLUMES": json.dumps({CLAIM: str(self.shared)}),
            "OMOAI_PEERING_STANDALONE": "true",
            "OMOAI_METRICS_PORT": str(self.operator_metrics),
            "OMOAI_METRICS_HOST": "127.0.0.1",
            "OMOAI_BACKOFF_BASE_S": "0.3",
            "OMOAI_BACKOFF_MAX_S": "5",
            "OMOAI_SUSPEND_POLL_S": "0.2",
            "OMOAI_ASR_CONCURRENCY": str(self.asr_slots),
            "OMOAI_LLM_CONCURRENCY": str(self.llm_slots),
            "OMOAI_REQUEST_TIMEOUT_S": "120",
            "OMOAI_WATCH_SERVER_TIMEOUT_S": "30",
            "OMOAI_WATCH_CLIENT_TIMEOUT_S": "45",
            "OMOAI_LOG_LEVEL": "WARNING",
        }
        if self.endpoints:
            env |= {
                "OMOAI_ENDPOINT_DISCOVERY": "true",
                "OMOAI_NAMESPACE": NS,
                "OMOAI_ASR_SERVICE": "omoai-asr",
                "OMOAI_LLM_SERVICE": "omoai-llm",
                "OMOAI_ASR_SLOTS_PER_ENDPOINT": str(self.asr_slots // self.asr_replicas),
                "OMOAI_LLM_SLOTS_PER_ENDPOINT": str(self.llm_slots),
            }
        proc = self._start(
            "operator",
            [
                PY,
                "-m",
                "omoai_operator.cli",
                "operator",
                "--standalone",
                "-n",
                NS,
                "--liveness",
                f"http://127.0.0.1:{free_port()}/healthz",
            ],
            "/metrics",
            port=self.operator_metrics,
            env=env,
        )
        self.procs["operator"] = proc

    def replica(self, i: int) -> tuple[Balancer, int]:
        """The balancer in front of ASR replica ``i`` and its index there."""
        return (self.balancers[i], 0) if self.endpoints else (self.balancers[0], i)

    def publish(self, service: str, name: str, port: int, *, ready: bool) -> None:
        """One EndpointSlice per replica, as the EndpointSlice controller writes them."""
        body = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "addressType": "IPv4",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/service-name": service,
                    "endpointslice.kubernetes.io/managed-by": "omoai-system-test",
                },
            },
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [
                {
                    "addresses": ["127.0.0.1"],
                    "conditions": {"ready": ready, "serving": ready, "terminating": False},
                    "targetRef": {"kind": "Pod", "name": f"{name}-pod", "namespace": NS},
                }
            ],
        }
        path = f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices"
        r = self.kapi.get(f"{path}/{name}")
        if r.status_code == 404:
            r = self.kapi.post(path, json=body)
        else:
            body["metadata"]["resourceVersion"] = r.json()["metadata"]["resourceVersion"]
            r = self.kapi.put(f"{path}/{name}", json=body)
        if r.status_code >= 300:
            raise AssertionError(f"EndpointSlice {name}: {r.status_code} {r.text}")

    def kill_asr(self, i: int) -> None:
        """Replica ``i`` dies (its endpoint turns not ready) and is started again (ready again)."""
        self.kill(f"asr-{i}")
        if self.endpoints:
            self.publish("omoai-asr", f"omoai-asr-{i}", self.asr.proxies[i].port, ready=False)
        time.sleep(2)
        self.start_asr(i)
        balancer, index = self.replica(i)
        balancer.restarted(index)
        if self.endpoints:
            self.publish("omoai-asr", f"omoai-asr-{i}", self.asr.proxies[i].port, ready=True)

    def kill_llm(self) -> None:
        """The LLM service dies (its endpoint turns not ready) and is started again."""
        self.kill("llm")
        if self.endpoints:
            self.publish("omoai-llm", "omoai-llm-0", self.llm.port, ready=False)
        time.sleep(1)
        self.start_llm()
        if self.endpoints:
            self.publish("omoai-llm", "omoai-llm-0", self.llm.port, ready=True)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(15)
        self.killed_tmp.append(proc.tmp)  # type: ignore[attr-defined]

    def _start_prometheus(self) -> None:
        exe = shutil.which("prometheus")
        if exe is None:
            raise RuntimeError("prometheus is not installed (scripts/setup.sh installs it with apt)")
        cfg = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
            "scrape_configs": [
                {"job_name": "omoai-asr", "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in self.asr_ports]}]},
                {"job_name": "omoai-llm", "static_configs": [{"targets": [f"127.0.0.1:{self.llm_port}"]}]},
                {"job_name": "omoai-operator", "static_configs": [{"targets": [f"127.0.0.1:{self.operator_metrics}"]}]},
            ],
        }
        path = self.work / "prometheus.yml"
        path.write_text(yaml.safe_dump(cfg))
        self._start(
            "prometheus",
            [
                exe,
                f"--config.file={path}",
                f"--storage.tsdb.path={self.work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.prom_port}",
            ],
            "/-/ready",
            port=self.prom_port,
        )

    def promql(self, query: str) -> list[dict[str, Any]]:
        r = httpx.get(f"http://127.0.0.1:{self.prom_port}/api/v1/query", params={"query": query}, timeout=10)
        r.raise_for_status()
        return r.json()["data"]["result"]

    def prom_targets_up(self) -> dict[str, bool]:
        return {f"{s['metric']['job']}/{s['metric']['instance']}": s["value"][1] == "1" for s in self.promql("up")}

    def _s3(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.s3_port}",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def _s3_setup(self) -> None:
        s3 = self._s3()
        for b in (S3_IN, S3_OUT):
            s3.create_bucket(Bucket=b)
        for clip in ("short.wav", "medium.wav", "long.wav"):
            s3.upload_file(str(self.shared / "audio" / clip), S3_IN, f"audio/{clip}")
        data = {"accessKeyId": "testing", "secretAccessKey": "testing"}
        self.kapi.post(
            f"/api/v1/namespaces/{NS}/secrets",
            json={
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": SECRET},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
            },
        ).raise_for_status()

    def close(self) -> None:
        stop_processes(*[p for p in self.procs.values() if p.popen.poll() is None], wait_s=10)
        for c in reversed(self.closers):
            with contextlib.suppress(Exception):
                c()

    # -- the user's side -----------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"/apis/{TJ.group}/{TJ.version}/namespaces/{NS}/{TJ.plural}"

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        exe = shutil.which("kubectl")
        if exe is None:
            raise RuntimeError("kubectl is not installed")
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "KUBECACHEDIR": str(self.work / "kubecache")}
        res = subprocess.run(
            [exe, *args], capture_output=True, text=True, timeout=120, env=env, input=input, check=False
        )
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {res.stderr}{res.stdout}")
        return res

    def kube_client(self) -> Any:
        from kubernetes import client, config

        config.load_kube_config(config_file=str(self.kubeconfig))
        return client.CustomObjectsApi()

    def jobs(self) -> dict[str, dict[str, Any]]:
        items = self.kapi.get(self.base).json()["items"]
        return {o["metadata"]["name"]: o for o in items}

    def get(self, name: str) -> dict[str, Any] | None:
        r = self.kapi.get(f"{self.base}/{name}")
        return None if r.status_code == 404 else r.json()

    def history(self, name: str) -> list[dict[str, Any]]:
        return self.emu.call(lambda: self.emu.emulator.history(TJ, NS, name))


# -- jobs ----------------------------------------------------------------------------------------
@dataclass
class Planned:
    name: str
    body: dict[str, Any]
    source: str
    output: str
    formats: tuple[str, ...]
    post: bool
    priority: int
    audio: str
    expect: str = "Succeeded"  # or a Failed reason, or "Deleted"
    created_at: float = 0.0
    done_at: float | None = None


def plan_job(
    i: int,
    prefix: str,
    *,
    audio: str | None = None,
    priority: int | None = None,
    source: str | None = None,
    post: bool | None = None,
    output: str | None = None,
) -> Planned:
    name = f"{prefix}-{i:03d}"
    audio = audio or ("short.wav", "medium.wav", "long.wav")[i % 3]
    source = source or ("url", "pvc", "s3")[i % 3 if i % 9 < 3 else (i + 1) % 3]
    output = output or ("s3" if i % 4 == 3 else "pvc")
    formats = FORMATS if i % 5 == 0 else (FORMATS[i % 5], "json")
    post = (i % 2 == 0) if post is None else post
    priority = priority if priority is not None else (10 if i % 7 == 0 else -5 if i % 11 == 0 else 0)
    src: dict[str, Any]
    if source == "url":
        src = {"url": f"{{static}}/audio/{audio}"}
    elif source == "pvc":
        src = {"pvc": {"claimName": CLAIM, "path": f"audio/{audio}"}}
    else:
        src = {"s3": {"bucket": S3_IN, "key": f"audio/{audio}", "endpoint": "{s3}", "secretRef": {"name": SECRET}}}
    out: dict[str, Any] = {"formats": list(formats)}
    if output == "pvc":
        out["pvc"] = {"claimName": CLAIM, "path": f"out/{prefix}"}
    else:
        out["s3"] = {"bucket": S3_OUT, "prefix": f"out/{prefix}", "endpoint": "{s3}", "secretRef": {"name": SECRET}}
    spec: dict[str, Any] = {"source": src, "output": out, "priority": priority, "backoffLimit": 12}
    if not post:
        spec["postprocess"] = dict(NO_POST)
    body = {"apiVersion": f"{TJ.group}/{TJ.version}", "kind": TJ.kind, "metadata": {"name": name}, "spec": spec}
    return Planned(name, body, source, output, tuple(formats), post, priority, audio)


def render(p: Planned, plat: Platform) -> dict[str, Any]:
    text = json.dumps(p.body).replace("{static}", plat.static.url).replace("{s3}", plat.s3_link.url)
    return json.loads(text)


# -- checks --------------------------------------------------------------------------------------
@dataclass
class Report:
    jobs: list[Planned] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    leftovers: list[str] = field(default_factory=list)
    tour: list[tuple[str, str, str]] = field(default_factory=list)  # case, what the user saw, verdict
    prometheus: list[tuple[str, str, str, str]] = field(default_factory=list)  # metric, prom, truth, verdict
    queue_order: str = "not checked"
    killed_left: list[str] = field(default_factory=list)  # temp files of SIGKILLed processes (die with a pod)
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def fail(self, msg: str) -> None:
        log(f"PROBLEM: {msg}")
        self.problems.append(msg)

    def table(self) -> str:
        lat = sorted(p.done_at - p.created_at for p in self.jobs if p.done_at is not None and p.expect != "Deleted")

        def pct(q: float) -> str:
            return f"{lat[min(len(lat) - 1, int(q * len(lat)))]:.1f} s" if lat else "-"

        rows = [
            ("jobs submitted", str(len(self.jobs))),
            ("outcomes", ", ".join(f"{k}: {v}" for k, v in sorted(self.outcomes.items()))),
            ("job latency p50 / p95 (create to terminal)", f"{pct(0.5)} / {pct(0.95)}"),
            ("queue order", self.queue_order),
            ("faults injected", str(len(self.faults.injected))),
            ("faults survived", f"{len(self.faults.survived)} of {len(self.faults.injected)}"),
            ("bad-input cases shown right", f"{sum(v == 'ok' for *_, v in self.tour)} of {len(self.tour)}"),
            (
                "Prometheus numbers agreeing",
                (
                    f"{sum(v == 'ok' for *_, v in self.prometheus)} of "
                    f"{sum(v != 'skipped' for *_, v in self.prometheus)}"
                ),
            ),
            ("fault effects", "; ".join(self.details) or "-"),
            ("temp files of SIGKILLed processes", ", ".join(self.killed_left) or "none"),
            (
                "resources left behind",
                str(len(self.leftovers)) + (": " + "; ".join(self.leftovers[:5]) if self.leftovers else ""),
            ),
            ("problems", str(len(self.problems))),
            ("wall time", f"{self.seconds:.0f} s"),
        ]
        w = max(len(a) for a, _ in rows)
        out = ["", "| what | result |", "|---|---|"] + [f"| {a.ljust(w)} | {b} |" for a, b in rows]
        out += ["", "| fault | survived |", "|---|---|"]
        out += [f"| {f} | {'yes' if f in self.faults.survived else 'NO'} |" for f in self.faults.injected]
        if self.prometheus:
            out += ["", "| metric | Prometheus | what happened | verdict |", "|---|--:|--:|---|"]
            out += [f"| {m} | {a} | {b} | {v} |" for m, a, b, v in self.prometheus]
        if self.tour:
            out += ["", "| bad input | the user saw | verdict |", "|---|---|---|"]
            out += [f"| {c} | {s[:110]} | {v} |" for c, s, v in self.tour]
        if self.problems:
            out += ["", "problems:"] + [f"- {p}" for p in self.problems]
        return "\n".join(out)


def _status(obj: dict[str, Any] | None) -> dict[str, Any]:
    return (obj or {}).get("status") or {}


def wait_terminal(plat: Platform, jobs: list[Planned], timeout: float) -> None:
    """Poll the API until every job (not expected to be deleted) is Succeeded or Failed."""
    end = time.monotonic() + timeout
    pending = {p.name: p for p in jobs if p.expect != "Deleted" and p.done_at is None}
    while pending:
        current = plat.jobs()
        for name, p in list(pending.items()):
            phase = _status(current.get(name)).get("phase")
            if phase in ("Succeeded", "Failed"):
                p.done_at = time.monotonic()
                del pending[name]
        if pending and time.monotonic() > end:
            stuck = {
                n: f"{_status(current.get(n)).get('phase')}: {_status(current.get(n)).get('message')}"
                for n in list(pending)[:10]
            }
            raise AssertionError(f"{len(pending)} job(s) not finished in {timeout:.0f}s, e.g. {stuck}")
        time.sleep(0.3)


def check_outcomes(plat: Platform, jobs: list[Planned], rep: Report) -> None:
    current = plat.jobs()
    s3 = plat._s3()
    for p in jobs:
        obj = current.get(p.name)
        if p.expect == "Deleted":
            if obj is not None:
                rep.fail(f"{p.name}: deleted but still there (finalizer left?)")
            rep.outcomes["Deleted"] += 1
            _check_no_outputs(plat, s3, p, rep)
            continue
        st = _status(obj)
        phase, reason = st.get("phase"), st.get("reason")
        rep.outcomes[phase or "missing"] += 1
        if p.expect == "Succeeded":
            if phase != "Succeeded":
                rep.fail(f"{p.name}: {phase} ({reason}: {st.get('message')}), expected Succeeded")
                continue
            _check_outputs(plat, s3, p, st, rep)
        elif phase != "Failed" or reason != p.expect:
            rep.fail(f"{p.name}: {phase}/{reason} ({st.get('message')}), expected Failed/{p.expect}")
        else:
            _check_no_outputs(plat, s3, p, rep)


def _outputs(plat: Platform, s3: Any, p: Planned) -> dict[str, bytes]:
    prefix = p.body["spec"]["output"].get("pvc", p.body["spec"]["output"].get("s3"))
    want = [f"{p.name}.{f}" for f in p.formats]
    found: dict[str, bytes] = {}
    if p.output == "pvc":
        d = plat.shared / prefix["path"]
        for f in d.glob(f"{p.name}.*") if d.exists() else []:
            found[f.name] = f.read_bytes()
    else:
        resp = s3.list_objects_v2(Bucket=S3_OUT, Prefix=f"{prefix['prefix']}/{p.name}.")
        for o in resp.get("Contents", []) or []:
            found[o["Key"].rsplit("/", 1)[1]] = s3.get_object(Bucket=S3_OUT, Key=o["Key"])["Body"].read()
    return {k: v for k, v in found.items() if k in want or k.startswith(p.name + ".")}


def _check_outputs(plat: Platform, s3: Any, p: Planned, st: dict[str, Any], rep: Report) -> None:
    found = _outputs(plat, s3, p)
    want = sorted(f"{p.name}.{f}" for f in p.formats)
    if sorted(found) != want:
        rep.fail(f"{p.name}: outputs {sorted(found)} != {want}")
        return
    doc = json.loads(found[f"{p.name}.json"])
    transcript = doc.get("transcript", doc)  # without post-processing the JSON is the transcript itself
    dur = plat.durations[p.audio]
    if abs(transcript["duration"] - dur) > 0.05:
        rep.fail(f"{p.name}: transcript duration {transcript['duration']} != {dur}")
    if p.post and not (doc.get("summary") and doc.get("topics")):
        rep.fail(f"{p.name}: post-processing asked for but the document has no summary/topics")
    if not p.post and doc.get("summary"):
        rep.fail(f"{p.name}: a summary although post-processing was off")
    checks = {
        "vtt": lambda b: b.startswith(b"WEBVTT"),
        "srt": lambda b: b.strip().startswith(b"1"),
        "md": lambda b: b.startswith(b"#"),
        "txt": lambda b: len(b.strip()) > 0 or not transcript["text"],
    }
    for fmt, ok in checks.items():
        name = f"{p.name}.{fmt}"
        if name in found and not ok(found[name]):
            rep.fail(f"{p.name}: {fmt} output looks incomplete: {found[name][:60]!r}")
    if abs(float(st.get("audioDurationSeconds") or 0) - dur) > 0.05:
        rep.fail(f"{p.name}: status audioDurationSeconds {st.get('audioDurationSeconds')} != {dur}")


def _check_no_outputs(plat: Platform, s3: Any, p: Planned, rep: Report) -> None:
    found = _outputs(plat, s3, p)
    if found:
        rep.fail(f"{p.name} ({p.expect}): outputs left: {sorted(found)}")


#: Files a process keeps in its temp directory for its whole life, not per request: onnxruntime
#: (the diarization VAD) writes its telemetry session id to ``$TMPDIR/.ses`` when imported and
#: reuses that one 51-byte file on every later start.
PROCESS_FILES = frozenset({".ses"})


def check_leftovers(plat: Platform, rep: Report) -> None:
    for d in (plat.shared / "out").rglob("*") if (plat.shared / "out").exists() else []:
        if ".omoai-staging" in d.parts or d.name.endswith(".tmp"):
            rep.leftovers.append(f"staging/temp on the volume: {d.relative_to(plat.shared)}")
            break
    for d in sorted(plat.tmp_root.iterdir()):
        files = [p.name for p in d.rglob("*") if p.is_file() and p.name not in PROCESS_FILES]
        if not files:
            continue
        if d in plat.killed_tmp:
            rep.killed_left.append(f"{d.name}: {len(files)} file(s)")
        else:
            rep.leftovers.append(f"temporary files of {d.name}: {files[:3]}")
    s3 = plat._s3()
    for b in (S3_IN, S3_OUT):
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=b).get("Contents", []) or []]
        staged = [k for k in keys if ".omoai-staging" in k]
        if staged:
            rep.leftovers.append(f"S3 staging objects in {b}: {staged[:3]}")
        uploads = s3.list_multipart_uploads(Bucket=b).get("Uploads", []) or []
        if uploads:
            rep.leftovers.append(f"S3 multipart uploads in {b}: {len(uploads)}")
    stuck = [n for n, o in plat.jobs().items() if o["metadata"].get("deletionTimestamp")]
    if stuck:
        rep.leftovers.append(f"jobs stuck deleting (finalizers): {stuck[:5]}")


# -- phases --------------------------------------------------------------------------------------
def submit(plat: Platform, jobs: list[Planned], *, via_kubectl: int) -> None:
    """The first ``via_kubectl`` with ``kubectl apply`` (one multi-document file), the rest with the
    Kubernetes Python client, as a bulk submitter would."""
    first, rest = jobs[:via_kubectl], jobs[via_kubectl:]
    if first:
        path = plat.work / f"{first[0].name}.yaml"
        path.write_text(yaml.safe_dump_all([render(p, plat) for p in first]))
        t = time.monotonic()
        out = plat.kubectl("apply", "--validate=false", "-f", str(path)).stdout
        for p in first:
            p.created_at = t
            assert f"transcriptionjob.omoai.io/{p.name} created" in out, out
    api = plat.kube_client() if rest else None
    for p in rest:
        p.created_at = time.monotonic()
        api.create_namespaced_custom_object(TJ.group, TJ.version, NS, TJ.plural, render(p, plat))


def phase_load(plat: Platform, n: int, rep: Report) -> None:
    jobs = [plan_job(i, "load") for i in range(n)]
    # Faults planned on specific jobs: a corrupted input, and jobs deleted while they run.
    corrupt = plan_job(n, "load", source="pvc", audio="corrupt-me.wav", post=False)
    shutil.copy(plat.shared / "audio" / "medium.wav", plat.shared / "audio" / "corrupt-me.wav")
    corrupt.expect = "InvalidAudio"
    # Jobs deleted while they run: their audio comes from a slow origin, so they are mid-request.
    (plat.shared / "slow").mkdir(exist_ok=True)
    shutil.copy(plat.shared / "audio" / "short.wav", plat.shared / "slow" / "short.wav")
    doomed = [plan_job(n + 1 + k, "load", post=True, priority=10) for k in range(3)]
    for d in doomed:
        d.expect = "Deleted"
        d.body["spec"]["source"] = {"url": "{static}/slow/short.wav"}
        d.source = "url"
    jobs += [corrupt, *doomed]
    rep.jobs += jobs
    before = len(rep.problems)
    log(f"load: {len(jobs)} jobs at once, {plat.asr_slots} ASR / {plat.llm_slots} LLM slots")
    plat.asr.hold()  # the first slots take their jobs and wait; the rest queue up
    submit(plat, jobs, via_kubectl=5)
    # Corrupt the input before the ASR service reads it (its job is queued or held).
    (plat.shared / "audio" / "corrupt-me.wav").write_bytes(b"\x00garbage, not a recording" * 50)
    rep.faults.note("corrupt an input file")
    _check_queue_order(plat, jobs, rep)
    # The ASR Service answering 503 for a while (at least 3 s, until a request met it): the held
    # requests are the first to meet it.
    rep.faults.note("ASR answers 503 for a while")
    plat.asr.fail(503)
    plat.asr.release()
    _for_a_while(lambda: plat.asr.answered("/v1/transcriptions", 503) > 0)
    plat.asr.clear()
    # The S3 server off the network for a while (at least 3 s, until a connection met the cut).
    rep.faults.note("S3 unreachable for a while")
    plat.s3_link.cut()
    _for_a_while(lambda: plat.s3_link.refused > 0 or _all_done(plat, jobs))
    plat.s3_link.mend()
    # An ASR replica killed while it works on a request, started again 2 s later.
    door, index = plat.replica(0)
    wait_until(lambda: door.replicas[index].in_flight > 0, 120, "a request on ASR replica 0")
    rep.faults.note("kill an ASR replica mid-request")
    plat.kill_asr(0)
    # Delete the slow jobs while their ASR request is in flight.
    for d in doomed:
        try:
            wait_until(lambda d=d: _status(plat.get(d.name)).get("phase") == "Transcribing", 120, f"{d.name} running")
        except AssertionError as e:
            raise AssertionError(f"{e}; its status: {json.dumps(_status(plat.get(d.name)))[:600]}") from None
    rep.faults.note("delete jobs while they run")
    for d in doomed:
        plat.kubectl("delete", "tj", d.name, "--wait=false")
    rep.details += [
        f"ASR reached {'through EndpointSlices' if plat.endpoints else 'through one Service URL'}",
        f"503 answers {plat.asr.answered('/v1/transcriptions', 503)}",
        f"S3 connections refused {plat.s3_link.refused}",
        f"ASR requests cut by the kill {door.replicas[index].broken}",
    ]
    wait_terminal(plat, jobs, timeout=120 + 6 * n)
    for d in doomed:
        wait_until(lambda d=d: plat.get(d.name) is None, 60, f"{d.name} gone")
    check_outcomes(plat, jobs, rep)
    _survived(
        rep,
        jobs,
        [
            "corrupt an input file",
            "ASR answers 503 for a while",
            "S3 unreachable for a while",
            "kill an ASR replica mid-request",
            "delete jobs while they run",
        ],
        before=before,
    )
    _check_prometheus(plat, jobs, rep)


def _all_done(plat: Platform, jobs: list[Planned]) -> bool:
    cur = plat.jobs()
    return all(_status(cur.get(p.name)).get("phase") in ("Succeeded", "Failed") for p in jobs if p.expect != "Deleted")


def _for_a_while(met: Callable[[], bool], least_s: float = 3.0, most_s: float = 30.0) -> None:
    """A fault lasts at least ``least_s``, and on until ``met()`` (it touched something), at most ``most_s``."""
    time.sleep(least_s)
    end = time.monotonic() + most_s - least_s
    while not met() and time.monotonic() < end:
        time.sleep(0.2)


def _survived(rep: Report, jobs: list[Planned], faults: list[str], *, before: int) -> None:
    # Every job of the phase ended as it should and left nothing: each fault of the phase survived.
    if len(rep.problems) == before:
        rep.faults.survived += faults


def _check_queue_order(plat: Platform, jobs: list[Planned], rep: Report) -> None:
    """While every ASR slot is held, the waiting jobs' positions settle on priority, then age."""
    slots = plat.asr_slots
    wait_until(lambda: plat.asr.count("/v1/transcriptions") >= slots, 120, "the ASR slots taken")
    held = {p["audio_url"] for _, path, p in plat.asr.requests if path == "/v1/transcriptions" and p}

    def settled() -> bool:
        cur = plat.jobs()
        queued = [(n, _status(o).get("queuePosition")) for n, o in cur.items() if _status(o).get("phase") == "Queued"]
        if len(queued) != len(jobs) - slots:
            return False
        order = sorted(queued, key=lambda q: q[1] or 0)
        ranked = sorted(
            (-cur[n]["spec"].get("priority", 0), cur[n]["metadata"]["creationTimestamp"], n) for n, _ in queued
        )
        return [n for n, _ in order] == [r[2] for r in ranked] and [q[1] for q in order] == list(
            range(1, len(queued) + 1)
        )

    try:
        wait_until(settled, 60 + len(jobs), "queue positions settled on priority order", interval=0.3)
        rep.queue_order = f"{len(jobs) - slots} waiting jobs in priority order (held slots: {len(held)})"
    except AssertionError as e:
        rep.fail(str(e))
        rep.queue_order = "NOT in priority order"


def _check_prometheus(plat: Platform, jobs: list[Planned], rep: Report) -> None:
    """Prometheus (scraping every second) against what the API and the balancer say happened."""
    truth_phase = Counter(
        _status(o).get("phase") for o in plat.jobs().values() if o["metadata"]["name"].startswith("load")
    )
    served = sum(r.audio_s[r.incarnation] for b in plat.balancers for r in b.replicas)
    failures = Counter(p.expect for p in jobs if p.expect not in ("Succeeded", "Deleted"))

    def compare(metric: str, query: str, truth: float, tol: float = 0.01) -> None:
        got: float | None = None

        def agrees() -> bool:
            nonlocal got
            res = plat.promql(query)
            got = float(res[0]["value"][1]) if res else 0.0
            return abs(got - truth) <= tol

        try:
            wait_until(agrees, 30, metric, interval=1.0)
            rep.prometheus.append((metric, f"{got:g}", f"{truth:g}", "ok"))
        except AssertionError:
            rep.prometheus.append((metric, f"{got:g}", f"{truth:g}", "DIFFERENT"))
            rep.fail(f"Prometheus {metric} = {got} but {truth} happened")

    for phase in ("Succeeded", "Failed"):
        compare(f"jobs{{phase={phase}}}", f'sum(omoai_operator_jobs{{phase="{phase}"}})', truth_phase[phase])
    compare("ASR audio seconds (live replicas)", "sum(omoai_asr_audio_seconds_total)", served, tol=0.05)
    if plat.promql("omoai_operator_job_failures_total"):
        for reason, k in failures.items():
            compare(f"failures{{reason={reason}}}", f'sum(omoai_operator_job_failures_total{{reason="{reason}"}})', k)
    else:
        rep.prometheus.append(("failures by reason", "-", str(dict(failures)), "skipped"))
    down = [t for t, up in plat.prom_targets_up().items() if not up]
    if down:
        rep.fail(f"Prometheus targets down at the end of the load: {down}")


def phase_restarts(plat: Platform, rep: Report) -> None:
    """The operator killed twice mid-job, the LLM service killed mid-summary: every job still ends
    Succeeded with each output written once."""
    jobs = [
        plan_job(i, "restart", post=True, source=("pvc", "url", "s3")[i % 3], output=("pvc", "s3")[i % 2])
        for i in range(6)
    ]
    rep.jobs += jobs
    before = len(rep.problems)
    plat.fake_llm.summary_delay_s = 2.0
    submit(plat, jobs, via_kubectl=2)
    wait_until(lambda: plat.llm.in_flight_by_path["/v1/summarize"] > 0, 180, "a summary in flight")
    rep.faults.note("kill the LLM service mid-summary")
    cut = plat.llm.in_flight_by_path["/v1/summarize"]
    plat.kill_llm()
    rep.details.append(f"summaries in flight at the LLM kill {cut}")
    for k in (1, 2):
        wait_until(
            lambda: any(
                _status(o).get("phase") in ("Transcribing", "PostProcessing")
                for n, o in plat.jobs().items()
                if n.startswith("restart")
            ),
            180,
            "a job mid-way",
        )
        rep.faults.note(f"kill and restart the operator mid-job ({k})")
        plat.kill("operator")
        time.sleep(1)
        plat.start_operator()
    plat.fake_llm.summary_delay_s = 0.0
    wait_terminal(plat, jobs, timeout=300)
    check_outcomes(plat, jobs, rep)
    _survived(
        rep,
        jobs,
        [
            "kill the LLM service mid-summary",
            "kill and restart the operator mid-job (1)",
            "kill and restart the operator mid-job (2)",
        ],
        before=before,
    )


BAD_SPECS: list[tuple[str, dict[str, Any], str]] = [
    (
        "two sources",
        {"source": {"url": "https://a.example/x.wav", "pvc": {"claimName": "d", "path": "x.wav"}}},
        "exactly one audio source",
    ),
    ("no source", {"source": {}}, "exactly one audio source"),
    ("ftp URL", {"source": {"url": "ftp://a.example/x.wav"}}, "spec.source.url"),
    ("path escaping the claim", {"source": {"pvc": {"claimName": CLAIM, "path": "../etc/passwd"}}}, "'..'"),
    ("no destination", {"output": {"formats": ["json"]}}, "exactly one output destination"),
    (
        "unknown format",
        {"output": {"pvc": {"claimName": CLAIM, "path": "o"}, "formats": ["docx"]}},
        "spec.output.formats",
    ),
    ("no formats", {"output": {"pvc": {"claimName": CLAIM, "path": "o"}, "formats": []}}, "spec.output.formats"),
    ("negative backoffLimit", {"backoffLimit": -1}, "spec.backoffLimit"),
    ("priority out of range", {"priority": 5000}, "spec.priority"),
    ("unknown summary mode", {"postprocess": {"summary": "long"}}, "spec.postprocess.summary"),
    ("language name", {"language": "Vietnamese"}, "spec.language"),
    ("chunk size 0", {"asr": {"chunkSize": 0}}, "spec.asr.chunkSize"),
    ("unknown field", {"colour": "blue"}, "colour"),
]


def phase_tour(plat: Platform, rep: Report) -> None:
    """Every malformed spec and audio, through the front door: what kubectl shows the user."""
    base = plan_job(0, "tour", source="pvc", post=False)
    for i, (case, change, needle) in enumerate(BAD_SPECS):
        body = render(base, plat)
        body["metadata"]["name"] = f"tour-spec-{i:02d}"
        body["spec"].update(change)
        res = plat.kubectl("apply", "--validate=false", "-f", "-", input=yaml.safe_dump(body), check=False)
        shown = (res.stderr or res.stdout).strip().splitlines()[-1] if (res.stderr or res.stdout) else ""
        shown = f"exit {res.returncode}: " + shown.rsplit(" is invalid: ", 1)[-1]
        ok = res.returncode != 0 and needle in res.stderr and plat.get(body["metadata"]["name"]) is None
        rep.tour.append((f"spec: {case}", shown, "ok" if ok else "WRONG"))
        if not ok:
            rep.fail(f"bad spec {case!r}: kubectl said {res.returncode} {res.stderr.strip()[:200]}")
    corpus_dir = plat.shared / "bad"
    corpus_dir.mkdir(exist_ok=True)
    cases = bad_audio(plat.work)
    jobs = []
    for i, (case, data) in enumerate(cases.items()):
        (corpus_dir / f"{case}.wav").write_bytes(data)
        p = plan_job(i, "tour-audio", source="pvc", post=False, output="pvc")
        p.body["spec"]["source"] = {"pvc": {"claimName": CLAIM, "path": f"bad/{case}.wav"}}
        p.body["spec"]["backoffLimit"] = 2
        p.expect = "InvalidAudio"
        jobs.append((case, p))
    rep.jobs += [p for _, p in jobs]
    submit(plat, [p for _, p in jobs], via_kubectl=len(jobs))
    wait_terminal(plat, [p for _, p in jobs], timeout=120)
    for case, p in jobs:
        got = plat.kubectl(
            "get", "tj", p.name, "-o", "jsonpath={.status.phase}/{.status.reason}: {.status.message}"
        ).stdout
        described = plat.kubectl("describe", "tj", p.name, check=False).stdout
        st = _status(plat.get(p.name))
        cond = next((c for c in st.get("conditions", []) if c["type"] == "Failed"), {})
        ok = got.startswith("Failed/InvalidAudio") and "InvalidAudio" in described and cond.get("status") == "True"
        rep.tour.append((f"audio: {case}", got, "ok" if ok else "WRONG"))
        if not ok:
            rep.fail(f"bad audio {case!r}: the user saw {got!r}")
    check_outcomes(plat, [p for _, p in jobs], rep)


def teardown_jobs(plat: Platform, rep: Report) -> None:
    """Delete everything with kubectl: every finalizer must be released."""
    res = plat.kubectl("delete", "tj", "--all", "--timeout=120s", check=False)
    if res.returncode != 0:
        rep.fail(f"kubectl delete --all: {res.stderr.strip()[:300]}")
    left = list(plat.jobs())
    if left:
        rep.leftovers.append(f"jobs not deleted (finalizers): {left[:5]}")


def run(jobs: int, work: Path, *, asr_replicas: int = 2, tour: bool = True, restarts: bool = True) -> Report:
    rep = Report()
    t0 = time.monotonic()
    # A proxy whose upstream was just killed logs each failed forward with a traceback: expected here.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    plat = Platform(work, asr_replicas=asr_replicas)
    try:
        log(f"starting the platform in {work}")
        plat.start()
        log("platform up: " + ", ".join(sorted(plat.prom_targets_up())))
        phase_load(plat, jobs, rep)
        if restarts:
            phase_restarts(plat, rep)
        if tour:
            phase_tour(plat, rep)
        check_leftovers(plat, rep)
        teardown_jobs(plat, rep)
    except AssertionError as e:
        rep.fail(str(e))
    finally:
        rep.seconds = time.monotonic() - t0
        plat.close()
    if rep.problems:
        log("logs of the components: " + str(plat.logs))
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make system", description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=100, help="jobs submitted at once in the load phase")
    ap.add_argument("--asr-replicas", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="working directory (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the working directory (logs, outputs)")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="omoai-system-"))
    rep = run(args.jobs, work, asr_replicas=args.asr_replicas)
    print(rep.table(), flush=True)
    ok = not rep.problems and not rep.leftovers
    if not args.keep and ok:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
