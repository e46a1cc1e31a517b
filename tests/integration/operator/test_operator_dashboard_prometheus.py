"""The dashboard and the `helm test` script against the real components.

A real Prometheus scrapes the real ASR service, the real LLM service and the real operator (kopf
against the API emulator) while a TranscriptionJob goes through all of them (the operator asks the
ASR service for its streamed answer) and a short realtime session (``/v1/realtime``, with partials
and a commit) runs against the same ASR service; then every query of every dashboard panel must
return data. Only panels that need hardware this machine lacks (GPU
memory, vLLM's own metrics) are exempt, each named with its reason. The chart's `helm test` script
(charts/omoai/files/smoke_test.py) runs against the same two services."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import shutil
import subprocess
import sys
import time
import wave
from pathlib import Path

import httpx
import pytest
import websockets
from operator_harness import CLAIM, HERE, SAMPLE, Kube, RealServices, job, operator_env, run_operator

from tests.support.processes import free_port, start_process, stop_processes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REPO = HERE.parents[2]
DASHBOARD = REPO / "charts" / "omoai" / "dashboards" / "omoai.json"
SMOKE = REPO / "charts" / "omoai" / "files" / "smoke_test.py"
NAMESPACE_LABEL = "omoai"
RATE_INTERVAL = "10s"
#: Panels no CPU-only test machine can fill, and why.
NEEDS_HARDWARE = {
    "GPU memory allocated": "the services run on CPU here: no CUDA allocator to read",
    "GPU memory reserved": "the services run on CPU here: no CUDA allocator to read",
    "LLM GPU memory": "the LLM runs the openai backend on CPU here",
    "vLLM KV cache usage": "vLLM needs a GPU; the LLM here runs another backend",
}


def _panels() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [(p["title"], t["expr"]) for p in dash["panels"] if p["type"] != "row" for t in p["targets"]]


def _query(expr: str) -> str:
    return expr.replace('namespace=~"$namespace"', f'namespace=~"{NAMESPACE_LABEL}"').replace(
        "$__rate_interval", RATE_INTERVAL
    )


def _has_data(prom: str, expr: str, start: float, end: float) -> bool:
    r = httpx.get(
        f"{prom}/api/v1/query_range",
        timeout=10,
        params={"query": _query(expr), "start": start, "end": end, "step": "1s"},
    )
    assert r.status_code == 200, (expr, r.text)
    for series in r.json()["data"]["result"]:
        if any(not math.isnan(float(v)) and not math.isinf(float(v)) for _, v in series["values"]):
            return True
    return False


@pytest.fixture
def prometheus(tmp_path: Path):
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed (apt package prometheus)")

    def start(targets: dict[str, str]) -> str:
        port = free_port()
        jobs = "".join(
            f"  - job_name: omoai-{name}\n    static_configs:\n"
            f"      - targets: ['{addr}']\n        labels: {{namespace: {NAMESPACE_LABEL}, pod: omoai-{name}-0}}\n"
            for name, addr in targets.items()
        )
        config = tmp_path / "prometheus.yml"
        config.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n" + jobs)
        proc = start_process(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            name="prometheus",
            log=tmp_path / "prometheus.log",
        )
        started.append(proc)
        return f"http://127.0.0.1:{port}"

    started: list = []
    try:
        yield start
    finally:
        stop_processes(*started)


def _realtime_session(asr_url: str) -> None:
    """One realtime session on the real ASR service: the sample spoken in real time (so windows are
    committed and partials decoded while it arrives), then a commit and its completed transcript.
    That fills the realtime row (sessions, lag, audio, ends, and the commit, partial and final
    latencies)."""
    with wave.open(str(SAMPLE), "rb") as w:
        pcm = w.readframes(w.getnframes())  # 16 kHz mono int16
    piece = 16000 * 2 // 4  # 0.25 s of audio
    update = {
        "type": "session.update",
        "session": {
            "type": "transcription",
            "include": ["omoai.partials"],
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}, "turn_detection": None}},
            "omoai": {"decode": {"chunk_size": 8, "left_context": 16, "right_context": 4}},
        },
    }

    async def until(ws: websockets.ClientConnection, wanted: str) -> list[str]:
        seen: list[str] = []
        while not seen or seen[-1] != wanted:
            event = json.loads(await asyncio.wait_for(ws.recv(), 60))
            assert event["type"] != "error", event
            seen.append(event["type"])
        return seen

    async def session() -> None:
        url = "ws" + asr_url.removeprefix("http") + "/v1/realtime?intent=transcription"
        async with websockets.connect(url) as ws:
            await until(ws, "session.created")
            await ws.send(json.dumps(update))
            await until(ws, "session.updated")
            for lo in range(0, len(pcm), piece):
                audio = base64.b64encode(pcm[lo : lo + piece]).decode()
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
                await asyncio.sleep(0.25)
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            seen = await until(ws, "conversation.item.input_audio_transcription.completed")
            # The events the latency panels observe (those sent while the audio arrived included).
            assert "omoai.input_audio_transcription.partial" in seen, seen

    asyncio.run(session())


def _wait_all_up(prom: str, n: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = httpx.get(f"{prom}/api/v1/query", params={"query": "up == 1"}, timeout=5).json()["data"]["result"]
        except httpx.HTTPError:
            result = []
        if len(result) == n:
            return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus did not scrape {n} targets in time")


def test_every_dashboard_panel_returns_data_from_the_real_components_after_a_job(
    kube: Kube,
    kubeconfig: Path,
    real_services: RealServices,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    prometheus,
) -> None:
    metrics_port = free_port()
    env = operator_env(
        real_services.asr_url, real_services.llm_url, data_dir.parent, OMOAI_METRICS_PORT=str(metrics_port)
    )
    with run_operator(env, monkeypatch):
        prom = prometheus(
            {
                "asr": real_services.asr_url.removeprefix("http://"),
                "llm": real_services.llm_url.removeprefix("http://"),
                "operator": f"127.0.0.1:{metrics_port}",
            }
        )
        _wait_all_up(prom, 3)
        start = time.time()
        body = job("dashboard")
        body["spec"] = {
            "source": {"pvc": {"claimName": CLAIM, "path": "samples/xin-chao.wav"}},
            "output": {"pvc": {"claimName": CLAIM, "path": f"{data_dir.name}/out"}, "formats": ["json"]},
        }
        kube.create(body)
        status = kube.wait_phase("dashboard", "Succeeded", "Failed", timeout=120)
        assert status["phase"] == "Succeeded", status
        # A job that fails (its audio does not exist) fills the failures-by-reason panel.
        missing = job("missing")
        missing["spec"] = {**body["spec"], "source": {"pvc": {"claimName": CLAIM, "path": "samples/none.wav"}}}
        kube.create(missing)
        assert kube.wait_phase("missing", "Succeeded", "Failed", timeout=60)["phase"] == "Failed"
        _realtime_session(real_services.asr_url)
        time.sleep(4)  # a few scrapes after the work
        end = time.time()
        panels = _panels()
        empty = sorted(
            {title for title, expr in panels if title not in NEEDS_HARDWARE and not _has_data(prom, expr, start, end)}
        )
    assert len(panels) > 40
    assert empty == [], f"dashboard panels without data after real work: {empty}"
    titles = {title for title, _ in panels}
    assert set(NEEDS_HARDWARE) <= titles, "an exemption names a panel that no longer exists"


def test_the_helm_test_script_checks_both_real_services(real_services: RealServices) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMOAI_")}
    for service, url in (("asr", real_services.asr_url), ("llm", real_services.llm_url)):
        proc = subprocess.run(
            [sys.executable, str(SMOKE), service, url],
            capture_output=True,
            text=True,
            timeout=120,
            env={**clean, "OMOAI_READY_TIMEOUT_S": "30"},
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"{service} ok" in proc.stdout
    down = subprocess.run(
        [sys.executable, str(SMOKE), "asr", f"http://127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, "OMOAI_READY_TIMEOUT_S": "3"},
        check=False,
    )
    assert down.returncode != 0 and "not ready" in down.stderr
