"""The TranscriptionJob operator end to end: real kopf against the API emulator serving the real
CRD, the real ASR service (tiny random checkpoint) and the real LLM service (openai backend against
a fake chat server) on loopback, each behind a fault-injection proxy. Every scenario asserts the
status history and what was (or was not) written to the shared volume.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from omoai_operator.controller import Controller
from operator_harness import (
    CLAIM,
    Kube,
    RealServices,
    job,
    operator_env,
    operator_process,
    proxies_for,
    run_operator,
)

from tests.support.processes import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

FORMATS = ["json", "txt", "srt", "vtt", "md"]


def _spec(data_dir: Path, audio: str = "samples/xin-chao.wav", **extra: object) -> dict:
    rel = data_dir.name
    return {
        "source": {"pvc": {"claimName": CLAIM, "path": audio}},
        "output": {"pvc": {"claimName": CLAIM, "path": f"{rel}/out"}, "formats": FORMATS},
        **extra,
    }


def _tj(name: str, data_dir: Path, **extra: object) -> dict:
    body = job(name)
    body["spec"] = _spec(data_dir, **extra)
    return body


def _left_behind(data_dir: Path) -> list[str]:
    out = data_dir / "out"
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.exists() else []


def _reasons(kube: Kube, name: str, *wanted: str, timeout: float = 10.0) -> list[str]:
    end = time.monotonic() + timeout
    while True:  # kopf posts events in the background: wait for the ones we expect
        reasons = [e["reason"] for e in kube.events(name)]
        if all(w in reasons for w in wanted) or time.monotonic() > end:
            return reasons
        time.sleep(0.1)


def test_happy_path_transcribes_postprocesses_and_writes_every_format_once(
    kube: Kube, kubeconfig: Path, real_services: RealServices, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with proxies_for(real_services.asr_url, real_services.llm_url) as (asr, llm):
        env = operator_env(asr.url, llm.url, data_dir.parent, OMOAI_METRICS_PORT=str(metrics_port := free_port()))
        with run_operator(env, monkeypatch):
            kube.create(_tj("happy", data_dir))
            status = kube.wait_phase("happy", "Succeeded", "Failed")
            assert status["phase"] == "Succeeded", status
            reasons = _reasons(kube, "happy", "Created", "Transcribing", "PostProcessing", "Completed")
            metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text

    assert kube.phases("happy") == ["Pending", "Transcribing", "PostProcessing", "Succeeded"]
    assert {"Created", "Transcribing", "PostProcessing", "Completed"} <= set(reasons)
    assert "StageSucceeded" not in reasons  # stage progress is in status.stages, not in events
    assert status["observedGeneration"] == 1
    assert status["progress"] == "100%"
    assert status["audioDurationSeconds"] == pytest.approx(7.0, abs=1.0)
    assert status["realTimeFactor"] > 0
    assert [c["type"] for c in status["conditions"] if c["status"] == "True"] == ["Admitted", "Complete"]
    assert all(
        status["stages"][s]["state"] == "Succeeded" and status["stages"][s]["attempts"] == 1
        for s in ("asr", "punctuate", "summarize", "topics", "write")
    )
    rel = f"pvc://{CLAIM}/{data_dir.name}/out"
    assert status["results"] == {"location": f"{rel}/", "files": [f"{rel}/happy.{f}" for f in sorted(FORMATS)]}
    assert status["summary"].startswith("Lời chào")
    # Each service was asked once per stage; the outputs exist once and nothing staged remains.
    assert asr.ok("/v1/transcriptions") == 1
    assert [llm.ok(p) for p in ("/v1/punctuate", "/v1/summarize", "/v1/topics")] == [1, 1, 1]
    assert _left_behind(data_dir) == [f"happy.{f}" for f in sorted(FORMATS)]
    doc = json.loads((data_dir / "out" / "happy.json").read_text())
    assert doc["transcript"]["duration"] == pytest.approx(status["audioDurationSeconds"], abs=0.01)
    assert doc["summary"]["title"] == "Lời chào" and doc["topics"][0]["title"] == "Lời chào"
    assert (data_dir / "out" / "happy.vtt").read_text().startswith("WEBVTT")
    # Metrics: jobs by phase, job duration by outcome (buckets up to hours), stage durations.
    assert 'omoai_operator_jobs{phase="Succeeded"} 1.0' in metrics
    assert 'omoai_operator_job_duration_seconds_bucket{le="14400.0",outcome="Succeeded"} 1.0' in metrics
    assert 'omoai_operator_stage_duration_seconds_count{outcome="succeeded",stage="asr"} 1.0' in metrics


def test_asr_down_then_back_is_retried_with_backoff_and_succeeds(
    kube: Kube, kubeconfig: Path, real_services: RealServices, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with proxies_for(real_services.asr_url, real_services.llm_url) as (asr, llm):
        asr.down()
        with run_operator(operator_env(asr.url, llm.url, data_dir.parent), monkeypatch):
            kube.create(_tj("flaky", data_dir, backoffLimit=20))
            # The status as it was seen to reach two retries (a second read could already show the
            # next attempt starting: the backoff here is a fraction of a second).
            seen = kube.wait("flaky", lambda o: (o or {}).get("status", {}).get("retries", 0) >= 2)
            retrying = (seen or {})["status"]
            asr.up()
            status = kube.wait_phase("flaky", "Succeeded", "Failed")
    assert retrying["reason"] == "Retrying" and "cannot reach the ASR service" in retrying["message"]
    assert retrying["phase"] == "Transcribing"
    assert status["phase"] == "Succeeded", status
    assert status["retries"] >= 2 and status["stages"]["asr"]["attempts"] == status["retries"] + 1
    assert asr.ok("/v1/transcriptions") == 1
    assert kube.phases("flaky") == ["Pending", "Transcribing", "PostProcessing", "Succeeded"]
    assert len(_left_behind(data_dir)) == len(FORMATS)


def test_llm_answering_500_fails_the_job_after_backoff_limit_with_the_reason(
    kube: Kube, kubeconfig: Path, real_services: RealServices, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with proxies_for(real_services.asr_url, real_services.llm_url) as (asr, llm):
        llm.fail(500, path="/v1/punctuate")
        with run_operator(operator_env(asr.url, llm.url, data_dir.parent), monkeypatch):
            kube.create(_tj("broken-llm", data_dir, backoffLimit=2))
            status = kube.wait_phase("broken-llm", "Succeeded", "Failed")
            reasons = _reasons(kube, "broken-llm", "BackoffLimitExceeded")
    assert status["phase"] == "Failed"
    assert status["reason"] == "BackoffLimitExceeded"
    assert "backoffLimit=2" in status["message"] and "/v1/punctuate answered 500" in status["message"]
    assert llm.count("/v1/punctuate") == 3  # the first try and two retries
    assert llm.count("/v1/summarize") == 0
    assert status["retries"] == 3 and status["completionTime"]
    assert any(c["type"] == "Failed" and c["status"] == "True" for c in status["conditions"])
    assert reasons.count("Retrying") == 2 and "BackoffLimitExceeded" in reasons
    assert kube.phases("broken-llm") == ["Pending", "Transcribing", "PostProcessing", "Failed"]
    assert _left_behind(data_dir) == []  # the stored transcript was staged only: nothing left


def test_active_deadline_wins_over_retries(
    kube: Kube, kubeconfig: Path, real_services: RealServices, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with proxies_for(real_services.asr_url, real_services.llm_url) as (asr, llm):
        asr.fail(503)
        with run_operator(operator_env(asr.url, llm.url, data_dir.parent), monkeypatch):
            kube.create(_tj("late", data_dir, backoffLimit=100, activeDeadlineSeconds=2))
            status = kube.wait_phase("late", "Succeeded", "Failed", timeout=30)
    assert status["phase"] == "Failed" and status["reason"] == "DeadlineExceeded"
    assert "activeDeadlineSeconds=2" in status["message"]
    assert 1 <= status["retries"] < 100
    assert _left_behind(data_dir) == []


def test_deadline_cancels_a_request_in_flight(
    kube: Kube, kubeconfig: Path, real_services: RealServices, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with proxies_for(real_services.asr_url, real_services.llm_url) as (asr, llm):
        asr.hold()
        with run_operator(operator_env(asr.url, llm.url, data_dir.parent), monkeypatch):
            kube.create(_tj("stuck", data_dir, activeDeadlineSeconds=2))
            status = kube.wait_phase("stuck", "Succeeded", "Failed", timeout=30)
            asr.wait_for(lambda: asr.cancelled >= 1, timeout=10)
    assert status["reason"] == "DeadlineExceeded" and status["retries"] == 0


def test_suspend_pauses_before_the_next_stage_and_resume_finishes(
    kube: Kube, kubeconfig: Path, real_services: RealServices, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The job's body as kopf hands it to the driver (a live view kopf updates from its watch): the
    # test waits until the operator has seen the suspend before letting the running stage finish.
    bodies: dict[str, Any] = {}
    drive = Controller.drive

    async def spying_drive(self: Controller, body: Any, stopped: Any) -> None:
        bodies[body["metadata"]["name"]] = body
        await drive(self, body, stopped)

    monkeypatch.setattr(Controller, "drive", spying_drive)
    with proxies_for(real_services.asr_url, real_services.llm_url) as (asr, llm):
        llm.hold({"/v1/punctuate"})
        with run_operator(operator_env(asr.url, llm.url, data_dir.parent), monkeypatch):
            kube.create(_tj("pausing", data_dir))
            llm.wait_for(lambda: llm.count("/v1/punctuate") == 1)
            kube.patch_spec("pausing", {"suspend": True})
            llm.wait_for(lambda: (bodies["pausing"].get("spec") or {}).get("suspend") is True, timeout=30)
            llm.release()  # the running stage finishes; the next one must not start
            paused = kube.wait(
                "pausing",
                lambda o: any(
                    c["type"] == "Suspended" and c["status"] == "True"
                    for c in (o or {}).get("status", {}).get("conditions", [])
                ),
            )
            kube.wait("pausing", lambda o: o["status"]["stages"].get("punctuate", {}).get("state") == "Succeeded")
            time.sleep(1.0)
            assert llm.count("/v1/summarize") == 0
            held = kube.status("pausing")
            kube.patch_spec("pausing", {"suspend": False})
            status = kube.wait_phase("pausing", "Succeeded", "Failed")
            reasons = _reasons(kube, "pausing", "Suspended", "Resumed")
    assert paused is not None and held["phase"] == "PostProcessing" and held["progress"] == "40%"
    assert held["observedGeneration"] == 2
    assert status["phase"] == "Succeeded" and status["observedGeneration"] == 3
    assert next(c for c in status["conditions"] if c["type"] == "Suspended")["status"] == "False"
    assert {"Suspended", "Resumed"} <= set(reasons)
    assert llm.ok("/v1/punctuate") == 1 and llm.ok("/v1/summarize") == 1
    assert len(_left_behind(data_dir)) == len(FORMATS)


def test_delete_while_transcribing_cancels_the_request_and_leaves_nothing(
    kube: Kube, kubeconfig: Path, real_services: RealServices, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with proxies_for(real_services.asr_url, real_services.llm_url) as (asr, llm):
        asr.hold()
        with run_operator(operator_env(asr.url, llm.url, data_dir.parent), monkeypatch):
            kube.create(_tj("doomed", data_dir))
            asr.wait_for(lambda: asr.count("/v1/transcriptions") == 1)
            kube.wait_phase("doomed", "Transcribing")
            kube.delete("doomed")
            kube.wait_gone("doomed", timeout=30)
            asr.wait_for(lambda: asr.cancelled >= 1, timeout=10)
            asr.release()
            time.sleep(0.5)
    assert llm.requests == []
    assert _left_behind(data_dir) == []  # no staging directory, no outputs
    assert asr.ok("/v1/transcriptions") == 0


def test_operator_killed_mid_job_restarts_and_completes_exactly_once(
    kube: Kube,
    kubeconfig: Path,
    real_services: RealServices,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    with proxies_for(real_services.asr_url, real_services.llm_url) as (asr, llm):
        llm.hold({"/v1/summarize"})
        env = {**operator_env(asr.url, llm.url, data_dir.parent), "KUBECONFIG": str(kubeconfig)}
        with operator_process(env, tmp_path / "operator.log") as proc:
            kube.create(_tj("survivor", data_dir))
            llm.wait_for(lambda: llm.count("/v1/summarize") == 1, timeout=60)
            before = kube.status("survivor")
            proc.send_signal(signal.SIGKILL)  # no goodbye: no finalizer run, no status written
            proc.wait(10)
        llm.release()
        with run_operator(operator_env(asr.url, llm.url, data_dir.parent), monkeypatch):
            status = kube.wait_phase("survivor", "Succeeded", "Failed")
    assert before["phase"] == "PostProcessing" and before["stages"]["punctuate"]["state"] == "Succeeded"
    assert status["phase"] == "Succeeded", status
    # The transcript and the punctuation were stored before the kill: not redone.
    assert asr.count("/v1/transcriptions") == 1 and llm.count("/v1/punctuate") == 1
    assert llm.ok("/v1/summarize") == 1 and llm.ok("/v1/topics") == 1
    assert status["stages"]["asr"]["attempts"] == 1 and status["stages"]["write"]["attempts"] == 1
    assert kube.phases("survivor") == ["Pending", "Transcribing", "PostProcessing", "Succeeded"]
    assert _left_behind(data_dir) == [f"survivor.{f}" for f in sorted(FORMATS)]


def test_ttl_after_finished_deletes_the_job_and_keeps_its_outputs(
    kube: Kube, kubeconfig: Path, real_services: RealServices, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        proxies_for(real_services.asr_url, real_services.llm_url) as (asr, llm),
        run_operator(operator_env(asr.url, llm.url, data_dir.parent), monkeypatch),
    ):
        kube.create(
            _tj(
                "brief",
                data_dir,
                ttlSecondsAfterFinished=1,
                postprocess={"punctuation": False, "summary": "none", "topics": False},
            )
        )
        # Not wait_phase: the TTL deletes the job a second after it finished, and a loaded machine
        # may not poll it within that second; the stored history keeps every status it had.
        kube.wait_gone("brief", timeout=120)
        status = [v["status"] for v in kube.history("brief") if (v.get("status") or {}).get("phase")][-1]
    assert status["phase"] == "Succeeded"
    assert llm.requests == []  # no post-processing asked for
    assert kube.phases("brief") == ["Pending", "Transcribing", "PostProcessing", "Succeeded"]
    assert len(_left_behind(data_dir)) == len(FORMATS)


def test_undecodable_audio_fails_at_once_with_a_clear_reason(
    kube: Kube, kubeconfig: Path, real_services: RealServices, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (data_dir / "audio" / "notes.wav").write_bytes(b"this is a text file, not a recording\n" * 20)
    with (
        proxies_for(real_services.asr_url, real_services.llm_url) as (asr, llm),
        run_operator(operator_env(asr.url, llm.url, data_dir.parent), monkeypatch),
    ):
        kube.create(_tj("garbage", data_dir, audio=f"{data_dir.name}/audio/notes.wav", backoffLimit=5))
        status = kube.wait_phase("garbage", "Succeeded", "Failed")
    assert status["phase"] == "Failed" and status["reason"] == "InvalidAudio", status
    assert "422" in status["message"] and status["retries"] == 0
    assert asr.count("/v1/transcriptions") == 1


def test_specs_only_the_operator_can_judge_fail_with_a_reason_and_no_retry(
    kube: Kube, kubeconfig: Path, real_services: RealServices, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        proxies_for(real_services.asr_url, real_services.llm_url) as (asr, llm),
        run_operator(operator_env(asr.url, llm.url, data_dir.parent), monkeypatch),
    ):
        unshared = _tj("unshared", data_dir)
        unshared["spec"]["source"] = {"pvc": {"claimName": "someone-elses", "path": "a.wav"}}
        kube.create(unshared)
        private = _tj("private", data_dir)
        private["spec"]["source"] = {"url": "http://127.0.0.1:9/secret.wav"}  # the ASR service refuses it
        kube.create(private)
        missing = _tj("missing", data_dir, audio=f"{data_dir.name}/audio/nope.wav")
        kube.create(missing)
        results = {n: kube.wait_phase(n, "Succeeded", "Failed") for n in ("unshared", "private", "missing")}
    assert results["unshared"]["reason"] == "VolumeNotShared"
    assert "someone-elses" in results["unshared"]["message"] and "omoai-data" in results["unshared"]["message"]
    for name in ("private", "missing"):
        assert results[name]["phase"] == "Failed" and results[name]["retries"] == 0, results[name]
        assert "ASR service /v1/transcriptions answered 4" in results[name]["message"]
    assert asr.count("/v1/transcriptions") == 2
