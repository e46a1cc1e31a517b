"""Fair sharing between namespaces, end to end (real kopf, the API emulator, loopback stand-ins):
namespace A submits 100 jobs, namespace B 5 jobs a moment later; B's first job starts within one
slot turnover; with a cap of 2 for A (a Namespace annotation, raised live), A never runs more.

The ASR requests are held at the proxy and let through one at a time, so every count below is a
state the operator reached, not a race.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp.web
import pytest
from operator_harness import CLAIM, Kube, job, operator_env, run_operator

from tests.support.operator_services import FaultProxy, StubServices

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

A, B = "team-a", "team-b"
TRANSCRIBE = "/v1/transcriptions"


class CountingProxy(FaultProxy):
    """The ASR proxy, also counting the requests in flight per namespace (from the audio URL)."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, "asr-proxy")
        self.running: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.arrivals: list[str] = []  # namespace/name, in order

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        body = await request.read()  # cached: the proxy reads it again
        url = json.loads(body).get("audio_url", "") if request.path == TRANSCRIBE else ""
        ns, _, name = url.removeprefix("https://audio.example/").removesuffix(".wav").partition("/")
        if not name:
            return await super()._handle(request)
        self.arrivals.append(f"{ns}/{name}")
        self.running[ns] += 1
        self.peak[ns] = max(self.peak[ns], self.running[ns])
        try:
            return await super()._handle(request)
        finally:
            self.running[ns] -= 1

    def arrived(self, n: int) -> None:
        self.wait_for(lambda: len(self.arrivals) >= n, timeout=60)


def _namespace(kube: Kube, name: str, annotations: dict[str, str] | None = None) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "annotations": annotations or {}}}
    kube.http.post("/api/v1/namespaces", json=body).raise_for_status()


def _annotate(kube: Kube, name: str, annotations: dict[str, str]) -> None:
    kube.http.patch(
        f"/api/v1/namespaces/{name}",
        json={"metadata": {"annotations": annotations}},
        headers={"Content-Type": "application/merge-patch+json"},
    ).raise_for_status()


def _path(ns: str) -> str:
    return f"/apis/omoai.io/v1alpha1/namespaces/{ns}/transcriptionjobs"


def _submit(kube: Kube, ns: str, names: list[str], out: str) -> None:
    for name in names:
        body = job(name, source={"url": f"https://audio.example/{ns}/{name}.wav"}, postprocess={"punctuation": False})
        body["spec"]["output"] = {"pvc": {"claimName": CLAIM, "path": out}, "formats": ["json"]}
        r = kube.http.post(_path(ns), json=body)
        assert r.status_code == 201, r.text


def _status(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    r = kube.http.get(f"{_path(ns)}/{name}")
    return (r.json().get("status") or {}) if r.status_code == 200 else {}


def _wait_status(kube: Kube, ns: str, name: str, pred: Any, timeout: float = 60) -> dict[str, Any]:
    import time

    end = time.monotonic() + timeout
    while True:
        s = _status(kube, ns, name)
        if pred(s):
            return s
        if time.monotonic() > end:
            raise AssertionError(f"{ns}/{name}: condition not met in {timeout}s; status: {s}")
        time.sleep(0.05)


def _running(kube: Kube, stubs: StubServices, data_dir: Path, monkeypatch: pytest.MonkeyPatch, slots: int) -> Any:
    proxy = CountingProxy(stubs.url)
    env = operator_env(proxy.url, stubs.url, data_dir.parent, asr_concurrency=slots)
    return proxy, run_operator(env, monkeypatch, "--namespace", A, "--namespace", B)


def test_a_namespace_with_5_jobs_takes_the_next_slot_after_one_with_100(
    kube: Kube, kubeconfig: Path, stubs: StubServices, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _namespace(kube, A)
    _namespace(kube, B)
    proxy, operator = _running(kube, stubs, data_dir, monkeypatch, slots=2)
    try:
        with operator:
            proxy.hold()
            _submit(kube, A, [f"a-{i:03d}" for i in range(100)], f"{data_dir.name}/fair")
            proxy.arrived(2)  # A holds both slots; 98 of its jobs wait
            _wait_status(kube, A, "a-099", lambda s: s.get("phase") == "Queued")
            _submit(kube, B, [f"b-{i}" for i in range(5)], f"{data_dir.name}/fair")
            _wait_status(kube, B, "b-4", lambda s: s.get("phase") == "Queued")
            proxy.let_one()  # one slot turns over...
            proxy.arrived(3)
            assert proxy.arrivals[2] == f"{B}/b-0"  # ...and B's first job takes it, ahead of 98 of A's
            # B's jobs keep alternating with A's rather than waiting behind them.
            for n in range(4, 12):
                proxy.let_one()
                proxy.arrived(n)
            assert [a.split("/")[0] for a in proxy.arrivals[2:10]] == [B, A] * 4
            proxy.release()
            for i in range(5):
                assert _wait_status(kube, B, f"b-{i}", lambda s: s.get("phase") == "Succeeded")
            for i in range(100):  # and nothing of A's was lost on the way
                assert _wait_status(kube, A, f"a-{i:03d}", lambda s: s.get("phase") == "Succeeded")
    finally:
        proxy.close()
    assert len(proxy.arrivals) == 105 and proxy.peak[B] <= 2


def test_a_namespace_cap_holds_and_a_raised_cap_applies_without_a_restart(
    kube: Kube, kubeconfig: Path, stubs: StubServices, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _namespace(kube, A, {"omoai.io/max-running": "2"})
    _namespace(kube, B)
    proxy, operator = _running(kube, stubs, data_dir, monkeypatch, slots=4)
    a_jobs = [f"a-{i:03d}" for i in range(20)]
    try:
        with operator:
            proxy.hold()
            _submit(kube, A, a_jobs, f"{data_dir.name}/cap")
            proxy.arrived(2)
            waiting = _wait_status(kube, A, "a-010", lambda s: s.get("reason") == "WaitingForNamespaceCap")
            assert "team-a" in waiting["message"] and "cap" in waiting["message"]
            _submit(kube, B, [f"b-{i}" for i in range(10)], f"{data_dir.name}/cap")
            proxy.arrived(4)  # B is not held back by A's cap: it takes the free slots
            assert proxy.running[A] == 2 and proxy.running[B] == 2
            for n in range(5, 11):  # slots turn over one at a time: A never gets a third
                proxy.let_one()
                proxy.arrived(n)
            assert proxy.peak[A] == 2
            _annotate(kube, A, {"omoai.io/max-running": "3"})  # the admin raises it, live
            n = len(proxy.arrivals)
            while proxy.running[A] < 3:  # the next slots to turn over may go to A's third job now
                assert n < 25, proxy.arrivals
                n += 1
                proxy.let_one()
                proxy.arrived(n)
            proxy.release()
            for name in a_jobs:
                assert _wait_status(kube, A, name, lambda s: s.get("phase") == "Succeeded")
            assert proxy.peak[A] == 3
    finally:
        proxy.close()
