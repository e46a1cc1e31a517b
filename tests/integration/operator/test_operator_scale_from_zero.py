"""Scale from zero: with no ready endpoint the jobs queue and say they wait for a replica to start
(not stuck), the metrics show no capacity and the whole queue; once an endpoint appears in the
Service's EndpointSlices every job runs on it and completes. Real kopf against the emulator serving
discovery.k8s.io/v1; instantly answering stand-in services keep it about the operator.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from operator_harness import Kube, job, operator_env, proxies_for, run_operator

from tests.support.operator_services import StubServices
from tests.support.processes import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

N = 6


def _metric(text: str, name: str, service: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'{name}{{service="{service}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{service={service!r}}} not in the scrape")


def test_jobs_wait_for_a_replica_with_a_truthful_status_and_all_complete_once_one_is_ready(
    kube: Kube, kubeconfig: Path, stubs: StubServices, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics_port = free_port()
    with proxies_for(stubs.url, stubs.url) as (asr, llm):
        env = operator_env(
            "http://omoai-asr.default.svc:8000",
            "http://omoai-llm.default.svc:8000",
            data_dir.parent,
            OMOAI_METRICS_PORT=metrics_port,
            OMOAI_ASR_SLOTS_PER_ENDPOINT=2,
            OMOAI_LLM_SLOTS_PER_ENDPOINT=2,
        )
        # The LLM service has its replica; the ASR service has scaled to zero (a slice with none ready).
        kube.publish_endpoints("omoai-llm", "omoai-llm-a", [("127.0.0.1", llm.port, True)])
        kube.publish_endpoints("omoai-asr", "omoai-asr-a", [("127.0.0.1", asr.port, False)])
        names = [f"zero-{i}" for i in range(N)]
        with run_operator(env, monkeypatch):
            for name in names:
                body = job(name)
                body["spec"]["output"] = {
                    "pvc": {"claimName": "omoai-data", "path": f"{data_dir.name}/out"},
                    "formats": ["json"],
                }
                kube.create(body)
            for name in names:
                kube.wait(name, lambda o: (o or {}).get("status", {}).get("reason") == "WaitingForReplica", 60)
            # The positions settle on the line's order (trailing updates, farther back less often).
            for pos, name in enumerate(names, start=1):
                kube.wait(name, lambda o, p=pos: (o or {}).get("status", {}).get("queuePosition") == p, 30)
            waiting = {n: kube.status(n) for n in names}
            scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
            assert asr.count("/v1/transcriptions") == 0
            # The replica becomes ready (what KEDA's wake-up ends in).
            kube.publish_endpoints("omoai-asr", "omoai-asr-a", [("127.0.0.1", asr.port, True)])
            done = {n: kube.wait_phase(n, "Succeeded", "Failed", timeout=120) for n in names}
            after = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
            events = {n: [e["reason"] for e in kube.events(n)] for n in names}

    for s in waiting.values():
        assert s["phase"] == "Queued", s
        assert "ASR replica to start" in s["message"] and "none is ready" in s["message"], s["message"]
        assert isinstance(s.get("queuePosition"), int)
    assert sorted(s["queuePosition"] for s in waiting.values()) == list(range(1, N + 1))
    assert _metric(scrape, "omoai_operator_endpoints", "asr") == 0
    assert _metric(scrape, "omoai_operator_slots", "asr") == 0
    assert _metric(scrape, "omoai_operator_queue_depth", "asr") == N
    assert _metric(scrape, "omoai_operator_endpoints", "llm") == 1
    assert _metric(scrape, "omoai_operator_slots", "llm") == 2
    assert _metric(scrape, "omoai_operator_endpoint_discovery", "asr") == 1
    assert _metric(scrape, "omoai_operator_replica_wakeups_total", "asr") == 0

    assert all(s["phase"] == "Succeeded" for s in done.values()), {n: s.get("message") for n, s in done.items()}
    assert asr.ok("/v1/transcriptions") == N and asr.max_in_flight <= 2
    assert _metric(after, "omoai_operator_replica_wakeups_total", "asr") == 1
    assert _metric(after, "omoai_operator_slots", "asr") == 2
    assert _metric(after, "omoai_operator_slots_used", "asr") == 0
    for name in names:
        assert "WaitingForReplica" in events[name], events[name]
        assert kube.phases(name) == ["Pending", "Queued", "Transcribing", "PostProcessing", "Succeeded"]
    assert len(list((data_dir / "out").glob("zero-*.json"))) == N


def test_without_rbac_for_endpointslices_the_operator_calls_the_service_url_and_says_so(
    kube: Kube, kubeconfig: Path, stubs: StubServices, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube.emu.emulator.forbidden.add("endpointslices")  # as an API server without the RBAC rule
    with proxies_for(stubs.url, stubs.url) as (asr, llm):
        env = operator_env(
            asr.url,
            llm.url,
            data_dir.parent,
            OMOAI_ASR_SERVICE="default/omoai-asr",
            OMOAI_LLM_SERVICE="default/omoai-llm",
            asr_concurrency=3,
        )
        with run_operator(env, monkeypatch) as runner:
            body = job("norbac")
            body["spec"]["output"] = {
                "pvc": {"claimName": "omoai-data", "path": f"{data_dir.name}/out"},
                "formats": ["json"],
            }
            kube.create(body)
            status = kube.wait_phase("norbac", "Succeeded", "Failed", timeout=60)
    assert status["phase"] == "Succeeded", status
    assert asr.ok("/v1/transcriptions") == 1
    assert "ASR endpoint discovery unavailable" in runner.output and asr.url in runner.output


def test_a_terminating_replica_finishes_what_it_runs_and_gets_nothing_new(
    kube: Kube, kubeconfig: Path, stubs: StubServices, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollout: the old pod is terminating (still serving, not ready); its running stages finish
    there, not retried; every new stage goes to the other replica; the capacity drops at once."""
    metrics_port = free_port()
    with proxies_for(stubs.url, stubs.url) as (old, new), proxies_for(stubs.url, stubs.url) as (llm, _):
        env = operator_env(
            "http://omoai-asr.default.svc:8000",
            llm.url,
            data_dir.parent,
            OMOAI_METRICS_PORT=metrics_port,
            OMOAI_ASR_SLOTS_PER_ENDPOINT=2,
        )
        kube.publish_endpoints("omoai-asr", "omoai-asr-old", [("127.0.0.1", old.port, True)])
        old.hold({"/v1/transcriptions"})
        with run_operator(env, monkeypatch):
            names = [f"roll-{i}" for i in range(6)]
            for name in names[:2]:
                body = job(name)
                body["spec"]["output"] = {
                    "pvc": {"claimName": "omoai-data", "path": f"{data_dir.name}/out"},
                    "formats": ["json"],
                }
                kube.create(body)
            old.wait_for(lambda: old.in_flight == 2)
            # The rollout: a new pod is ready, the old one terminating with two requests in flight.
            kube.publish_endpoints("omoai-asr", "omoai-asr-new", [("127.0.0.1", new.port, True)])
            kube.publish_endpoints("omoai-asr", "omoai-asr-old", [("127.0.0.1", old.port, True)], terminating=True)
            _wait_metric(metrics_port, "omoai_operator_slots", "asr", 2)
            for name in names[2:]:
                body = job(name)
                body["spec"]["output"] = {
                    "pvc": {"claimName": "omoai-data", "path": f"{data_dir.name}/out"},
                    "formats": ["json"],
                }
                kube.create(body)
            new.wait_for(lambda: new.ok("/v1/transcriptions") == 4)
            old.release()  # the old pod finishes within its grace period
            statuses = {n: kube.wait_phase(n, "Succeeded", "Failed", timeout=60) for n in names}
    assert all(s["phase"] == "Succeeded" and s["retries"] == 0 for s in statuses.values()), statuses
    assert old.count("/v1/transcriptions") == 2 and old.ok("/v1/transcriptions") == 2
    assert new.count("/v1/transcriptions") == 4 and new.max_in_flight <= 2


def _wait_metric(port: int, name: str, service: str, want: float, timeout: float = 30.0) -> None:
    import time

    end = time.monotonic() + timeout
    while True:
        try:
            if _metric(httpx.get(f"http://127.0.0.1:{port}/metrics").text, name, service) == want:
                return
        except (httpx.HTTPError, AssertionError):
            pass
        if time.monotonic() > end:
            raise AssertionError(f"{name}{{service={service!r}}} never became {want}")
        time.sleep(0.05)
