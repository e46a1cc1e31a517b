"""The autoscaling signal, evaluated for real: Helm renders the chart's KEDA trigger query and the
prometheus-adapter rule, a real Prometheus scrapes a real operator (kopf against the emulator) that
has queued and running jobs, and both queries return the demand on the service, the queue length
plus the stages in flight; once the jobs are done they return 0 (the scaler's cue to go back down).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from operator_harness import Kube, job, operator_env, proxies_for, run_operator

from tests.support.operator_services import StubServices
from tests.support.processes import free_port, start_process, stop_processes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chart"))
from chart_render import HELM, helm_template, one

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

N = 7
SLOTS = 2


def _rendered_queries() -> tuple[str, str]:
    if not HELM.exists():
        pytest.skip("Helm is not installed: run `npm install` (scripts/setup.sh does)")
    # A scaled-out service needs a model cache every replica can mount (ReadWriteOnce is refused).
    values = {
        "autoscaling.asr.keda.enabled": True,
        "autoscaling.prometheusAdapter.rules": True,
        "asr.modelCache.accessModes[0]": "ReadWriteMany",
    }
    proc = helm_template(HELM, values)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    keda = one(docs, "ScaledObject", "omoai-asr")["spec"]["triggers"][0]["metadata"]["query"]
    rules = yaml.safe_load(one(docs, "ConfigMap", "omoai-prometheus-adapter")["data"]["config.yaml"])
    template = rules["externalRules"][0]["metricsQuery"]
    # What prometheus-adapter does for an HPA asking for omoai_operator_demand{service=asr} (not namespaced).
    adapter = template.replace("<<.LabelMatchers>>", 'service="asr"').replace("<<.GroupBy>>", "")
    return keda, adapter


def _query(port: int, promql: str) -> float | None:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": promql}, timeout=5)
    except httpx.HTTPError:
        return None
    body: dict[str, Any] = r.json()
    assert body["status"] == "success", body
    result = body["data"]["result"]
    if not result:
        return None
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def _until_value(port: int, promql: str, want: float, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = _query(port, promql)
        if last == want:
            return
        time.sleep(0.5)
    raise AssertionError(f"{promql} = {last}, expected {want}")


def test_the_keda_and_adapter_queries_return_queue_plus_in_flight_from_a_real_prometheus(
    kube: Kube,
    kubeconfig: Path,
    stubs: StubServices,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed (apt package prometheus; scripts/setup.sh installs it)")
    keda_query, adapter_query = _rendered_queries()
    metrics_port, prom_port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: omoai-operator\n    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
    )
    prom = start_process(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        name="prometheus",
        log=tmp_path / "prometheus.log",
    )
    try:
        with proxies_for(stubs.url, stubs.url) as (asr, llm):
            asr.hold({"/v1/transcriptions"})  # the one replica's two slots stay busy
            env = operator_env(
                "http://omoai-asr.default.svc:8000",
                llm.url,
                data_dir.parent,
                OMOAI_METRICS_PORT=metrics_port,
                OMOAI_ASR_SLOTS_PER_ENDPOINT=SLOTS,
            )
            kube.publish_endpoints("omoai-asr", "omoai-asr-a", [("127.0.0.1", asr.port, True)])
            with run_operator(env, monkeypatch):
                for i in range(N):
                    body = job(f"signal-{i}")
                    body["spec"]["output"] = {
                        "pvc": {"claimName": "omoai-data", "path": f"{data_dir.name}/out"},
                        "formats": ["json"],
                    }
                    kube.create(body)
                asr.wait_for(lambda: asr.in_flight == SLOTS)
                for i in range(SLOTS, N):
                    kube.wait(f"signal-{i}", lambda o: (o or {}).get("status", {}).get("phase") == "Queued", 60)
                _until_value(prom_port, 'omoai_operator_queue_depth{service="asr"}', N - SLOTS)
                _until_value(prom_port, 'omoai_operator_in_flight{service="asr"}', SLOTS)
                queued_then = (_query(prom_port, keda_query), _query(prom_port, adapter_query))
                asr.release()
                for i in range(N):
                    kube.wait_phase(f"signal-{i}", "Succeeded", timeout=60)
                _until_value(prom_port, keda_query, 0)
                idle_then = (_query(prom_port, keda_query), _query(prom_port, adapter_query))
    finally:
        stop_processes(prom, wait_s=10)
    assert queued_then == (N, N), (keda_query, adapter_query, queued_then)
    assert idle_then == (0, 0)
