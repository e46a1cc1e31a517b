"""A real Prometheus scrapes the service; the real-time factor is a PromQL ratio that returns a
value, and ``promtool check metrics`` has nothing to say about a scrape.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import AsrServer

from tests.support.processes import free_port, start_process, stop_processes

pytestmark = pytest.mark.timeout(300)

RTF = (
    'sum(rate(omoai_inference_duration_seconds_sum{task="transcribe"}[30s]))'
    " / sum(rate(omoai_asr_audio_seconds_total[30s]))"
)


def test_promtool_finds_nothing_wrong_with_a_scrape(server: AsrServer, clips: list[Path]) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (apt package prometheus)")
    with server.client() as http:
        assert http.post("/v1/transcriptions", files={"file": clips[0].read_bytes()}).status_code == 200
        scrape = http.get("/metrics").text
    proc = subprocess.run(
        ["promtool", "check", "metrics"], input=scrape, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "" and proc.stderr.strip() == "", proc.stdout + proc.stderr
    for name in (
        "omoai_inference_duration_seconds_bucket",
        "omoai_asr_audio_seconds_total",
        "omoai_asr_requests_total",
        "omoai_asr_requests_in_flight",
        "omoai_asr_queue_depth",
        "omoai_asr_batch_size_bucket",
        "omoai_gpu_cache_clears_total",
        "omoai_build_info",
    ):
        assert name in scrape
    assert 'le="14400.0"' in scrape  # buckets up to hours


def test_prometheus_scrapes_the_service_and_computes_the_real_time_factor(
    server: AsrServer, clips: list[Path], tmp_path: Path
) -> None:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed (apt package prometheus)")
    port = free_port()
    target = server.url.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: omoai-asr\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    prom = start_process(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        name="prometheus",
        log=tmp_path / "prometheus.log",
    )
    stop = threading.Event()

    def traffic() -> None:  # keep audio flowing so rate() has increases to divide
        with server.client() as http:
            while not stop.is_set():
                http.post("/v1/transcriptions", files={"file": clips[1].read_bytes()})
                stop.wait(0.3)

    feeder = threading.Thread(target=traffic, daemon=True)
    feeder.start()
    try:
        deadline = time.monotonic() + 150
        value = None
        while time.monotonic() < deadline and value is None:
            time.sleep(1)
            if prom.popen.poll() is not None:
                pytest.fail(f"prometheus exited: {prom.logs()}")
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": RTF}, timeout=5)
            except httpx.HTTPError:
                continue
            result = r.json().get("data", {}).get("result", [])
            if result and result[0]["value"][1] not in ("NaN", "+Inf"):
                value = float(result[0]["value"][1])
        assert value is not None, "no real-time factor from Prometheus in time"
        assert 0 < value < 10  # the tiny model is far faster than real time
        up = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": "up"}, timeout=5).json()
        assert up["data"]["result"][0]["value"][1] == "1"
    finally:
        stop.set()
        feeder.join(30)
        stop_processes(prom)
