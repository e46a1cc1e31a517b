"""Helpers and fixtures of the operator integration tests: the API emulator serving the real CRD, a kubeconfig
for it, the operator (real kopf via KopfRunner, or a real ``omoai operator`` process), loopback
services behind fault-injection proxies, and a synchronous client to drive it all like a user.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import kopf
import pytest
import yaml
from kopf.testing import KopfRunner

from tests.support import operator_crd
from tests.support.emulator import Emulator, EmulatorThread, Kind, builtin_validator
from tests.support.operator_services import FakeOpenAI, FaultProxy, StubServices
from tests.support.processes import ServerProcess, free_port, start_process, stop_processes

HERE = Path(__file__).resolve().parent

SAMPLE = HERE.parents[2] / "samples" / "xin-chao.wav"
NAMESPACE = "default"
CLAIM = "omoai-data"


def _crd_kind() -> tuple[Kind, dict[str, Any]]:
    crd = operator_crd.load_crd()
    names = crd["spec"]["names"]
    version = next(v for v in crd["spec"]["versions"] if v["storage"])
    kind = Kind(
        crd["spec"]["group"],
        version["name"],
        names["plural"],
        names["kind"],
        namespaced=crd["spec"]["scope"] == "Namespaced",
        status_subresource="status" in (version.get("subresources") or {}),
        validate=operator_crd.validate,
        defaults=operator_crd.apply_defaults,
    )
    return kind, names


TJ, _NAMES = _crd_kind()
EVENTS = Kind("", "v1", "events", "Event")
NAMESPACES = Kind("", "v1", "namespaces", "Namespace", namespaced=False)
SECRETS = Kind("", "v1", "secrets", "Secret")
ENDPOINTSLICES = Kind("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", validate=builtin_validator())


class Kube:
    """What a user (or kubectl) does, over HTTP against the emulator."""

    def __init__(self, emu: EmulatorThread) -> None:
        self.emu = emu
        self.http = httpx.Client(base_url=emu.url, timeout=15)
        self.base = f"/apis/{TJ.group}/{TJ.version}/namespaces/{NAMESPACE}/{TJ.plural}"

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(self.base, json=obj)
        if r.status_code != 201:
            raise AssertionError(f"create answered {r.status_code}: {r.text}")
        return r.json()

    def try_create(self, obj: dict[str, Any]) -> httpx.Response:
        return self.http.post(self.base, json=obj)

    def get(self, name: str) -> dict[str, Any] | None:
        r = self.http.get(f"{self.base}/{name}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def patch_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        r = self.http.patch(
            f"{self.base}/{name}", json={"spec": spec}, headers={"Content-Type": "application/merge-patch+json"}
        )
        r.raise_for_status()
        return r.json()

    def delete(self, name: str) -> None:
        r = self.http.delete(f"{self.base}/{name}")
        r.raise_for_status()

    def status(self, name: str) -> dict[str, Any]:
        obj = self.get(name)
        return (obj or {}).get("status") or {}

    def wait(
        self, name: str, pred: Callable[[dict[str, Any] | None], bool], timeout: float = 60.0
    ) -> dict[str, Any] | None:
        end = time.monotonic() + timeout
        while True:
            obj = self.get(name)
            if pred(obj):
                return obj
            if time.monotonic() > end:
                raise AssertionError(f"{name}: condition not met within {timeout}s; last: {json.dumps(obj)[:3000]}")
            time.sleep(0.05)

    def wait_phase(self, name: str, *phases: str, timeout: float = 60.0) -> dict[str, Any]:
        obj = self.wait(name, lambda o: o is not None and (o.get("status") or {}).get("phase") in phases, timeout)
        assert obj is not None
        return obj["status"]

    def wait_gone(self, name: str, timeout: float = 60.0) -> None:
        self.wait(name, lambda o: o is None, timeout)

    def phases(self, name: str) -> list[str]:
        """The distinct successive phases the object went through (from the stored history)."""
        seen: list[str] = []
        for version in self.emu.call(lambda: self.emu.emulator.history(TJ, NAMESPACE, name)):
            phase = (version.get("status") or {}).get("phase")
            if phase and (not seen or seen[-1] != phase):
                seen.append(phase)
        return seen

    def history(self, name: str) -> list[dict[str, Any]]:
        return self.emu.call(lambda: self.emu.emulator.history(TJ, NAMESPACE, name))

    def events(self, name: str) -> list[dict[str, Any]]:
        items = self.http.get(f"/api/v1/namespaces/{NAMESPACE}/events").json()["items"]
        return [e for e in items if (e.get("involvedObject") or {}).get("name") == name]

    def publish_endpoints(
        self, service: str, slice_name: str, endpoints: list[tuple[str, int, bool]], *, terminating: bool = False
    ) -> None:
        """Create or replace one EndpointSlice of ``service``: ``(address, port, ready)`` per endpoint, as
        the EndpointSlice controller writes them (one slice per port, so one per loopback replica)."""
        ports = sorted({p for _, p, _ in endpoints})
        assert len(ports) <= 1, "one port per slice"
        body: dict[str, Any] = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "addressType": "IPv4",
            "metadata": {
                "name": slice_name,
                "labels": {"kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "tests"},
            },
            "ports": [{"name": "http", "port": ports[0], "protocol": "TCP"}] if ports else [],
            "endpoints": [
                {
                    "addresses": [a],
                    "conditions": {"ready": ready and not terminating, "serving": ready, "terminating": terminating},
                    "targetRef": {"kind": "Pod", "name": f"{slice_name}-pod", "namespace": NAMESPACE},
                }
                for a, _, ready in endpoints
            ],
        }
        path = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"
        r = self.http.get(f"{path}/{slice_name}")
        if r.status_code == 404:
            r = self.http.post(path, json=body)
        else:
            r = self.http.put(f"{path}/{slice_name}", json=body)
        if r.status_code >= 300:
            raise AssertionError(f"EndpointSlice {slice_name}: {r.status_code} {r.text}")

    def delete_endpoints(self, slice_name: str) -> None:
        r = self.http.delete(f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices/{slice_name}")
        r.raise_for_status()

    def create_secret(self, name: str, data: dict[str, str]) -> None:
        import base64

        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        self.http.post(f"/api/v1/namespaces/{NAMESPACE}/secrets", json=body).raise_for_status()


PEERINGS = Kind("kopf.dev", "v1", "kopfpeerings", "KopfPeering")


def enable_peering(emulator: EmulatorThread) -> None:
    """Serve kopf's peering kind and create the ``omoai`` peering object (as the chart does)."""
    emulator.emulator.add_kind(PEERINGS)
    httpx.post(
        f"{emulator.url}/apis/kopf.dev/v1/namespaces/{NAMESPACE}/kopfpeerings",
        json={"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "omoai"}},
    ).raise_for_status()


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    emu = Emulator()
    emu.add_kind(TJ, shortnames=tuple(_NAMES.get("shortNames", ())))
    emu.add_kind(EVENTS)
    emu.add_kind(NAMESPACES)
    emu.add_kind(SECRETS)
    emu.add_kind(ENDPOINTSLICES)
    thread = EmulatorThread(emu).start()
    httpx.post(f"{thread.url}/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}}).raise_for_status()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture
def kube(emulator: EmulatorThread) -> Kube:
    return Kube(emulator)


@pytest.fixture
def kubeconfig(emulator: EmulatorThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": emulator.url}}],
        "users": [{"name": "tester", "user": {"token": "test-token"}}],
        "contexts": [
            {"name": "emulator", "context": {"cluster": "emulator", "user": "tester", "namespace": NAMESPACE}}
        ],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setenv("KUBECACHEDIR", str(tmp_path / "kubecache"))
    return path


@pytest.fixture(scope="session")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared volume (claim ``omoai-data``): the operator writes here, the ASR service reads here."""
    root = tmp_path_factory.mktemp("omoai-data")
    (root / "samples").mkdir()
    shutil.copy(SAMPLE, root / "samples" / SAMPLE.name)
    return root


@pytest.fixture
def data_dir(shared_root: Path, request: pytest.FixtureRequest) -> Path:
    """This test's own directory on the shared volume."""
    d = shared_root / request.node.name[:60]
    (d / "audio").mkdir(parents=True, exist_ok=True)
    return d


@dataclass
class RealServices:
    asr_url: str
    llm_url: str
    logs: Path

    def tail(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.logs.glob("*.log")))


@pytest.fixture(scope="session")
def real_services(shared_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServices]:
    """The real ASR service (tiny random ChunkFormer checkpoint, file:// confined to the shared
    volume) and the real LLM service (openai backend against :class:`FakeOpenAI`), as processes."""
    work = tmp_path_factory.mktemp("services")
    model = work / "asr-model"
    subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import sys; from omoai_asr.engine.testing import write_random_checkpoint; "
                "write_random_checkpoint(sys.argv[1])"
            ),
            str(model),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    fake = FakeOpenAI()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("OMOAI_")}
    procs: list[ServerProcess] = []
    try:
        asr_port, llm_port = free_port(), free_port()
        # Both start before either is waited for: their start-ups overlap.
        procs.append(
            start_process(
                [
                    sys.executable,
                    "-m",
                    "omoai_asr",
                    "serve",
                    "--model",
                    str(model),
                    "--port",
                    str(asr_port),
                    "--file-root",
                    str(shared_root),
                ],
                name="omoai-asr serve",
                log=work / "asr.log",
                env={**base_env, "OMOAI_TORCH_THREADS": "1", "OMOAI_LOG_LEVEL": "WARNING"},
            )
        )
        procs.append(
            start_process(
                [
                    sys.executable,
                    "-m",
                    "omoai_llm",
                    "serve",
                    "--backend",
                    "openai",
                    "--model",
                    FakeOpenAI.MODEL,
                    "--openai-base-url",
                    fake.url,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(llm_port),
                ],
                name="omoai-llm serve",
                log=work / "llm.log",
                env={**base_env, "OMOAI_LOG_LEVEL": "WARNING", "OMOAI_OPENAI_RETRIES": "0"},
            )
        )
        asr_url, llm_url = f"http://127.0.0.1:{asr_port}", f"http://127.0.0.1:{llm_port}"
        procs[0].wait_ready(asr_url + "/readyz", timeout_s=240)
        procs[1].wait_ready(llm_url + "/readyz", timeout_s=240)
        yield RealServices(asr_url, llm_url, work)
    finally:
        stop_processes(*procs, wait_s=20)
        fake.close()


@pytest.fixture
def stubs() -> Iterator[StubServices]:
    s = StubServices()
    try:
        yield s
    finally:
        s.close()


@contextlib.contextmanager
def proxies_for(asr_url: str, llm_url: str) -> Iterator[tuple[FaultProxy, FaultProxy]]:
    asr, llm = FaultProxy(asr_url, "asr-proxy"), FaultProxy(llm_url, "llm-proxy")
    try:
        yield asr, llm
    finally:
        asr.close()
        llm.close()


def operator_env(
    asr_url: str, llm_url: str, data_dir: Path, *, asr_concurrency: int = 2, llm_concurrency: int = 2, **extra: Any
) -> dict[str, str]:
    env = {
        "OMOAI_ASR_URL": asr_url,
        "OMOAI_LLM_URL": llm_url,
        "OMOAI_VOLUMES": json.dumps({CLAIM: str(data_dir)}),
        "OMOAI_PEERING_STANDALONE": "true",
        "OMOAI_METRICS_PORT": "0",
        "OMOAI_BACKOFF_BASE_S": "0.1",
        "OMOAI_BACKOFF_MAX_S": "0.4",
        "OMOAI_SUSPEND_POLL_S": "0.1",
        "OMOAI_ASR_CONCURRENCY": str(asr_concurrency),
        "OMOAI_LLM_CONCURRENCY": str(llm_concurrency),
        "OMOAI_REQUEST_TIMEOUT_S": "60",
        "OMOAI_WATCH_SERVER_TIMEOUT_S": "30",
        "OMOAI_WATCH_CLIENT_TIMEOUT_S": "45",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _fast_settings() -> kopf.OperatorSettings:
    s = kopf.OperatorSettings()
    s.queueing.exit_timeout = 0.5
    s.background.cancellation_polling = 0.2
    s.background.instant_exit_timeout = 0.1
    s.watching.reconnect_backoff = 0.2
    return s


@contextlib.contextmanager
def run_operator(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, *extra: str) -> Iterator[KopfRunner]:
    """Real kopf with our handlers, in a thread (KopfRunner), against the emulator."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    standalone = ["--standalone"] if env.get("OMOAI_PEERING_STANDALONE", "true") == "true" else []
    args = ["run", "-m", "omoai_operator.handlers", *standalone, "--namespace", NAMESPACE, *extra]
    with KopfRunner(args, settings=_fast_settings(), timeout=30) as runner:
        yield runner
    assert runner.exit_code == 0, runner.output[-5000:]


@contextlib.contextmanager
def operator_process(env: dict[str, str], log_path: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """``omoai operator`` as a real process (it can be killed with SIGKILL)."""
    standalone = ["--standalone"] if env.get("OMOAI_PEERING_STANDALONE", "true") == "true" else []
    cmd = [
        sys.executable,
        "-m",
        "omoai_operator.cli",
        "operator",
        *standalone,
        "-n",
        NAMESPACE,
        "--liveness",
        f"http://127.0.0.1:{free_port()}/healthz",
        *extra,
    ]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(15)


def job(name: str, *, source: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": source or {"url": f"https://audio.example/{name}.wav"},
        "output": {"pvc": {"claimName": CLAIM, "path": "out"}, "formats": ["json", "txt", "srt", "vtt", "md"]},
    }
    body.update(copy.deepcopy(spec))
    return {"apiVersion": f"{TJ.group}/{TJ.version}", "kind": TJ.kind, "metadata": {"name": name}, "spec": body}
