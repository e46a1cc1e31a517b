"""The pure state machine: decisions, transitions, Job-like retry/deadline/suspend/TTL semantics."""

from __future__ import annotations

import datetime as dt

import pytest
from omoai_operator import reconcile as rc
from omoai_operator.spec import JobSpec

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def spec(**kw: object) -> JobSpec:
    base = {"source": {"url": "https://a.example/x.wav"},
            "output": {"pvc": {"claimName": "d", "path": "o"}, "formats": ["json"]}}
    return JobSpec.model_validate(base | kw)


def apply(status: dict, t: rc.Transition) -> dict:
    return rc.merge_patch(status, t.patch)


def running(s: JobSpec, now: dt.datetime = T0) -> dict:
    status = apply({}, rc.initialize(s, now, 1))
    return apply(status, rc.stage_started(s, status, "asr", now, 1))


def test_new_job_is_initialised_pending_with_its_plan() -> None:
    s = spec()
    assert rc.decide(s, {}, T0).kind == "init"
    t = rc.initialize(s, T0, 3)
    assert t.patch["phase"] == "Pending" and t.patch["observedGeneration"] == 3
    assert "asr, punctuate, summarize, topics, write" in t.patch["message"]
    assert t.event == rc.Event("Normal", "Created", t.patch["message"])


def test_plan_skips_disabled_postprocessing_steps() -> None:
    assert rc.plan(spec(postprocess={"punctuation": False, "summary": "none", "topics": False})) == ("asr", "write")
    assert rc.plan(spec(postprocess={"topics": False})) == ("asr", "punctuate", "summarize", "write")


def test_stages_run_in_order_and_the_phase_follows_the_stage() -> None:
    s = spec()
    status = apply({}, rc.initialize(s, T0, 1))
    seen = []
    for _ in range(5):
        d = rc.decide(s, status, T0)
        assert d.kind == "run"
        status = apply(status, rc.stage_started(s, status, d.stage, T0))
        seen.append((d.stage, status["phase"]))
        status = apply(status, rc.stage_succeeded(s, status, d.stage, T0, 1.0, {}))
    assert seen == [("asr", "Transcribing"), ("punctuate", "PostProcessing"), ("summarize", "PostProcessing"),
                    ("topics", "PostProcessing"), ("write", "PostProcessing")]
    assert status["progress"] == "100%"
    assert rc.decide(s, status, T0).kind == "complete"
    done = apply(status, rc.complete(s, status, T0, "pvc://d/o/", ["pvc://d/o/x.json"], "A summary"))
    assert done["phase"] == "Succeeded" and done["results"]["files"] == ["pvc://d/o/x.json"]
    assert rc.is_true(done, "Complete") and rc.decide(s, done, T0).kind == "finished"


def test_start_time_is_set_once_at_admission() -> None:
    s = spec()
    status = running(s, T0)
    assert status["startTime"] == "2026-03-01T12:00:00Z" and rc.is_true(status, "Admitted")
    later = apply(status, rc.stage_started(s, status, "punctuate", T0 + dt.timedelta(seconds=30)))
    assert later["startTime"] == status["startTime"]


def test_retryable_failure_backs_off_exponentially_until_the_backoff_limit() -> None:
    s = spec(backoffLimit=2)
    status = running(s)
    fail = rc.Failure("ServiceUnavailable", "ASR down", retryable=True)
    delays = []
    for _ in range(2):
        after = rc.stage_failed(s, status, "asr", fail, T0, rc.Backoff(10, 360))
        assert not after.failed
        delays.append(after.retry_in_s)
        status = apply(status, after.transition)
        assert status["reason"] == "Retrying" and after.transition.event.type == "Warning"
    assert delays == [10, 20]
    after = rc.stage_failed(s, status, "asr", fail, T0, rc.Backoff(10, 360))
    assert after.failed
    status = apply(status, after.transition)
    assert status["phase"] == "Failed" and status["reason"] == "BackoffLimitExceeded"
    assert "3 time(s), more than backoffLimit=2" in status["message"] and "ASR down" in status["message"]
    assert rc.is_true(status, "Failed") and status["retries"] == 3


def test_backoff_limit_zero_fails_on_the_first_retryable_error() -> None:
    s = spec(backoffLimit=0)
    after = rc.stage_failed(s, running(s), "asr", rc.Failure("Timeout", "t", retryable=True), T0, rc.Backoff())
    assert after.failed


def test_permanent_failure_fails_at_once_with_its_own_reason() -> None:
    s = spec(backoffLimit=5)
    after = rc.stage_failed(s, running(s), "asr", rc.Failure("InvalidAudio", "not audio", retryable=False), T0,
                            rc.Backoff())
    status = apply(running(s), after.transition)
    assert after.failed and status["reason"] == "InvalidAudio" and status["message"] == "asr: not audio"
    assert status.get("retries", 0) == 0


def test_backoff_is_capped_and_honours_retry_after() -> None:
    b = rc.Backoff(10, 60)
    assert [b.delay(n) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]
    assert b.delay(1, retry_after_s=30) == 30


def test_deadline_wins_over_retries() -> None:
    s = spec(backoffLimit=100, activeDeadlineSeconds=60)
    status = running(s, T0)
    after = rc.stage_failed(s, status, "asr", rc.Failure("ServiceUnavailable", "x", retryable=True),
                            T0 + dt.timedelta(seconds=55), rc.Backoff(10, 360))
    assert after.retry_in_s == pytest.approx(5.0)  # sleep until the deadline, not past it
    status = apply(status, after.transition)
    d = rc.decide(s, status, T0 + dt.timedelta(seconds=60))
    assert d.kind == "fail" and d.reason == "DeadlineExceeded" and "activeDeadlineSeconds=60" in d.message


def test_deadline_counts_from_admission_not_creation() -> None:
    s = spec(activeDeadlineSeconds=10)
    pending = apply({}, rc.initialize(s, T0, 1))
    assert rc.decide(s, pending, T0 + dt.timedelta(hours=1)).kind == "run"  # queued an hour: no deadline yet


def test_suspend_pauses_and_resume_restarts_the_deadline_clock() -> None:
    s = spec(activeDeadlineSeconds=60)
    status = running(s, T0)
    paused = spec(activeDeadlineSeconds=60, suspend=True)
    assert rc.decide(paused, status, T0).kind == "suspend"
    status = apply(status, rc.suspend(status, T0))
    assert rc.decide(paused, status, T0 + dt.timedelta(hours=2)).kind == "suspended"  # no deadline while paused
    assert rc.decide(s, status, T0 + dt.timedelta(hours=2)).kind == "resume"
    resumed_at = T0 + dt.timedelta(hours=2)
    status = apply(status, rc.resume(status, resumed_at))
    assert status["startTime"] == rc.stamp(resumed_at)
    assert not rc.is_true(status, "Suspended")
    assert rc.decide(s, status, resumed_at + dt.timedelta(seconds=30)).kind == "run"


def test_finished_job_with_ttl_expires_at_completion_plus_ttl() -> None:
    s = spec(ttlSecondsAfterFinished=300)
    status = {"phase": "Succeeded", "completionTime": "2026-03-01T12:00:00Z"}
    d = rc.decide(s, status, T0)
    assert d.kind == "expire" and d.at == T0 + dt.timedelta(seconds=300)
    assert rc.decide(spec(), status, T0).kind == "finished"


def test_queued_sets_the_phase_only_before_the_first_stage() -> None:
    s = spec()
    pending = apply({}, rc.initialize(s, T0, 1))
    t = rc.queued(pending, "asr", "asr", 3)
    assert t.patch["phase"] == "Queued" and t.patch["queuePosition"] == 3 and t.event is not None
    mid = running(s)
    t = rc.queued(mid, "punctuate", "llm", 2)
    assert "phase" not in t.patch and t.patch["queuePosition"] == 2 and t.event is None
    started = rc.stage_started(s, apply(pending, rc.queued(pending, "asr", "asr", 1)), "asr", T0)
    assert started.patch["queuePosition"] is None  # cleared (merge patch null) when the stage starts


def test_conditions_keep_their_transition_time_when_unchanged() -> None:
    status = {"conditions": rc.set_condition({}, "Suspended", True, "Suspended", "m", T0)}
    again = rc.set_condition(status, "Suspended", True, "Suspended", "m2", T0 + dt.timedelta(minutes=1))
    assert again[0]["lastTransitionTime"] == rc.stamp(T0) and again[0]["message"] == "m2"
    flipped = rc.set_condition(status, "Suspended", False, "Resumed", "r", T0 + dt.timedelta(minutes=1))
    assert flipped[0]["lastTransitionTime"] == rc.stamp(T0 + dt.timedelta(minutes=1))


def test_real_time_factor_is_recorded_when_the_job_ends() -> None:
    s = spec()
    status = running(s, T0) | {"audioDurationSeconds": 100.0}
    t = rc.complete(s, status, T0 + dt.timedelta(seconds=25), "loc", [], None)
    assert t.patch["realTimeFactor"] == 0.25


def test_merge_patch_follows_rfc7386() -> None:
    assert rc.merge_patch({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": None, "e": 3}, "d": [2]}) == {
        "a": {"c": 2, "e": 3}, "d": [2]}
