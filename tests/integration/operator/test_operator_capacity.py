"""Capacity: 50 jobs at once against a concurrency limit of 2 per service. Instantly answering
stand-in services (the real paths and shapes) keep the test about the operator, not about models.

Nothing here depends on timing: the test waits for conditions, and it lets the held ASR requests
finish one at a time, so that the order in which requests reach the service is exactly the order in
which the queue granted the slots (with two slots free together, the two granted jobs race to the
service, and under load a late one can be overtaken by several).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from operator_harness import Kube, job, operator_env, proxies_for, run_operator

from tests.support.operator_services import StubServices
from tests.support.processes import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

N = 50


def _priority(i: int) -> int:
    if i == 7:
        return -5  # one low-priority job: it must go last
    return 10 if i % 5 == 3 else 0


def test_fifty_jobs_with_concurrency_two_all_succeed_in_priority_order_never_over_the_limit(
    kube: Kube, kubeconfig: Path, stubs: StubServices, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"batch-{i:02d}" for i in range(N)]
    with proxies_for(stubs.url, stubs.url) as (asr, llm):
        asr.hold()  # the first two jobs take the slots and wait; the other 48 queue up
        metrics_port = free_port()
        env = operator_env(
            asr.url, llm.url, data_dir.parent, asr_concurrency=2, llm_concurrency=2, OMOAI_METRICS_PORT=metrics_port
        )
        with run_operator(env, monkeypatch):
            for i, name in enumerate(names):
                body = job(name, priority=_priority(i))
                body["spec"]["output"] = {
                    "pvc": {"claimName": "omoai-data", "path": f"{data_dir.name}/out"},
                    "formats": ["json"],
                }
                kube.create(body)
            asr.wait_for(lambda: asr.count("/v1/transcriptions") == 2)
            queued = [n for n in names if n not in ("batch-00", "batch-01")]
            for name in queued:
                kube.wait_phase(name, "Queued", timeout=60)
            # The positions settle on the queue's order: priority first, then age (then name).
            expected = sorted(queued, key=lambda n: (-_priority(int(n[-2:])), int(n[-2:])))
            for pos, name in enumerate(expected, start=1):
                kube.wait(name, lambda o, p=pos: (o or {}).get("status", {}).get("queuePosition") == p, timeout=30)
            waiting = _metrics_once(
                metrics_port,
                [
                    'omoai_operator_queue_depth{service="asr"} 48.0',
                    'omoai_operator_in_flight{service="asr"} 2.0',
                    'omoai_operator_jobs{phase="Queued"} 48.0',
                ],
            )
            # One held request at a time: its slot goes to the head of the line, whose request is
            # then the only one that can arrive; wait for it before letting the next one go.
            for arrived in range(3, N + 1):
                asr.let_one()
                asr.wait_for(lambda n=arrived: asr.count("/v1/transcriptions") == n, timeout=60)
            asr.release()
            statuses = {n: kube.wait_phase(n, "Succeeded", "Failed", timeout=120) for n in names}

    # While the line was full, the metrics said so.
    assert 'omoai_operator_queue_depth{service="asr"} 48.0' in waiting
    assert 'omoai_operator_in_flight{service="asr"} 2.0' in waiting
    assert 'omoai_operator_jobs{phase="Queued"} 48.0' in waiting
    assert all(s["phase"] == "Succeeded" for s in statuses.values()), {n: s.get("message") for n, s in statuses.items()}
    assert asr.max_in_flight == 2
    assert llm.max_in_flight <= 2
    assert asr.ok("/v1/transcriptions") == N and llm.ok("/v1/punctuate") == N
    # Served in priority order: the slots were granted in queue order, the lowest priority last.
    arrivals = [p["audio_url"].rsplit("/", 1)[1][:-4] for _, path, p in asr.requests if path == "/v1/transcriptions"]
    assert arrivals[2:] == expected
    assert arrivals[-1] == "batch-07"
    phases = kube.phases("batch-49")
    assert phases == ["Pending", "Queued", "Transcribing", "PostProcessing", "Succeeded"]
    assert len(list((data_dir / "out").glob("batch-*.json"))) == N


def _metrics_once(port: int, wanted: list[str], timeout: float = 30.0) -> str:
    """The metrics page once it shows every line of ``wanted`` (a job's phase is counted just after
    its status write returns, so the page may lag the status the test saw by a moment)."""
    end = time.monotonic() + timeout
    while True:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        if all(w in text for w in wanted) or time.monotonic() > end:
            return text
        time.sleep(0.05)
