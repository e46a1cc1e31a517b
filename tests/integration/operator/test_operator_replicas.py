"""Capacity that follows the replicas, end to end: real kopf against the emulator serving
EndpointSlices, real ASR service processes (tiny random checkpoint, 2 slots each, advertised on
/v1/capacity) published as endpoints of one Service, each behind a proxy standing for its pod.

30 jobs spread over three replicas, never more on one than its slots; a fourth replica becomes
ready mid-run and takes work; one is killed with requests in flight and those jobs finish on the
others, each transcribed successfully exactly once and written once; the capacity metrics say
what happened at each step.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from operator_harness import CLAIM, SAMPLE, Kube, job, operator_env, run_operator

from tests.support.operator_services import StubServices
from tests.support.processes import free_port, stop_processes
from tests.support.replicas import Replica, scrape_value, start_asr_replicas, write_model

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

N = 30
SLOTS = 2


@pytest.fixture
def replicas(shared_root: Path, tmp_path: Path) -> Iterator[list[Replica]]:
    model = write_model(tmp_path / "asr-model")
    reps = start_asr_replicas(["a", "b", "c", "d"], model, shared_root, tmp_path, max_concurrency=SLOTS)
    try:
        yield reps
    finally:
        for r in reps:
            r.proxy.close()
        stop_processes(*(r.proc for r in reps), wait_s=20)


def _until(pred: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            if pred():
                return
        except (httpx.HTTPError, AssertionError):
            pass  # the metrics endpoint is not up yet, or the series not there yet
        if time.monotonic() > end:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.02)


def test_thirty_jobs_follow_the_replicas_as_they_come_and_go_and_each_is_transcribed_once(
    kube: Kube,
    kubeconfig: Path,
    replicas: list[Replica],
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b, c, d = replicas
    names = [f"rep-{i:02d}" for i in range(N)]
    for name in names:
        shutil.copy(SAMPLE, data_dir / "audio" / f"{name}.wav")
    metrics_port = free_port()
    scrapes: dict[str, str] = {}

    def scrape() -> str:
        return httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text

    llm = StubServices()
    try:
        env = operator_env(
            "http://omoai-asr.default.svc:8000",
            llm.url,
            data_dir.parent,
            llm_concurrency=8,
            OMOAI_METRICS_PORT=metrics_port,
            OMOAI_BACKOFF_BASE_S=0.2,
            OMOAI_BACKOFF_MAX_S=0.5,
        )
        for r in (a, b, c):
            kube.publish_endpoints("omoai-asr", f"omoai-asr-{r.name}", [("127.0.0.1", r.port, True)])
        # The fourth pod exists but is not ready yet (loading its model).
        kube.publish_endpoints("omoai-asr", "omoai-asr-d", [("127.0.0.1", d.port, False)])
        with run_operator(env, monkeypatch):
            _until(
                lambda: scrape_value(scrape(), "omoai_operator_slots", service="asr") == 3 * SLOTS,
                "three replicas' slots",
            )
            scrapes["three"] = scrape()
            for name in names:
                body = job(
                    name,
                    source={"pvc": {"claimName": CLAIM, "path": f"{data_dir.name}/audio/{name}.wav"}},
                    postprocess={"punctuation": True, "summary": "none", "topics": False},
                )
                body["spec"]["output"] = {
                    "pvc": {"claimName": CLAIM, "path": f"{data_dir.name}/out"},
                    "formats": ["json"],
                }
                kube.create(body)
            _until(lambda: a.proxy.ok and b.proxy.ok and c.proxy.ok, "each of the three replicas answered")
            # Their next requests stay at their doors (so jobs are still queued whatever the
            # machine's speed): each replica ends up with both slots held, mid-request.
            for r in (a, b, c):
                r.proxy.hold()
            _until(lambda: all(len(r.proxy.held) == SLOTS for r in (a, b, c)), "A, B and C each holding two requests")
            stuck = set(c.proxy.held)
            # The fourth replica becomes ready mid-run and takes work.
            kube.publish_endpoints("omoai-asr", "omoai-asr-d", [("127.0.0.1", d.port, True)])
            _until(lambda: d.proxy.ok >= 1, "D answered")
            scrapes["four"] = scrape()
            # C dies with its two requests in flight; its slice says not ready, then it is gone.
            c.kill()
            kube.publish_endpoints("omoai-asr", "omoai-asr-c", [("127.0.0.1", c.port, False)], terminating=True)
            kube.delete_endpoints("omoai-asr-c")
            a.proxy.release()
            b.proxy.release()
            statuses = {n: kube.wait_phase(n, "Succeeded", "Failed", timeout=240) for n in names}
            scrapes["end"] = scrape()
    finally:
        llm.close()

    assert all(s["phase"] == "Succeeded" for s in statuses.values()), {n: s.get("message") for n, s in statuses.items()}
    # Spread over every replica, never more on one than its slots.
    for r in replicas:
        assert r.proxy.ok >= 1, f"replica {r.name} took no work"
        assert r.proxy.max_in_flight <= SLOTS, (r.name, r.proxy.max_in_flight)
    # Each recording transcribed successfully exactly once, across all replicas; C's two finished elsewhere.
    answered: Counter[str] = Counter()
    for r in replicas:
        answered.update(r.proxy.answered)
    assert len(answered) == N and set(answered.values()) == {1}, answered
    for url in stuck:
        assert c.proxy.answered[url] == 0 and answered[url] == 1
        name = url.rsplit("/", 1)[1].removesuffix(".wav")
        assert statuses[name]["retries"] >= 1 and statuses[name]["stages"]["asr"]["attempts"] >= 2
    others = [n for n in names if f"{n}.wav" not in {u.rsplit("/", 1)[1] for u in stuck}]
    assert all(statuses[n]["retries"] == 0 for n in others), {n: statuses[n]["retries"] for n in others}
    # Written once each.
    outs = sorted(p.name for p in (data_dir / "out").glob("rep-*.json"))
    assert outs == sorted(f"{n}.json" for n in names)

    # The capacity metrics say what happened.
    assert scrape_value(scrapes["three"], "omoai_operator_endpoints", service="asr") == 3
    assert scrape_value(scrapes["four"], "omoai_operator_endpoints", service="asr") == 4
    assert scrape_value(scrapes["four"], "omoai_operator_slots", service="asr") == 4 * SLOTS
    assert scrape_value(scrapes["four"], "omoai_operator_slots_used", service="asr") <= 4 * SLOTS
    end = scrapes["end"]
    assert scrape_value(end, "omoai_operator_endpoints", service="asr") == 3
    assert scrape_value(end, "omoai_operator_slots", service="asr") == 3 * SLOTS
    assert scrape_value(end, "omoai_operator_slots_used", service="asr") == 0
    assert scrape_value(end, "omoai_operator_in_flight", service="asr") == 0
    assert scrape_value(end, "omoai_operator_stage_duration_seconds_count", stage="asr", outcome="succeeded") == N
    assert scrape_value(end, "omoai_operator_stage_duration_seconds_count", stage="asr", outcome="failed") >= SLOTS
    assert scrape_value(end, "omoai_operator_retries_total", stage="asr") >= SLOTS
