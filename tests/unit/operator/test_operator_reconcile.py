"""The pure state machine: decisions, transitions, Job-like retry/deadline/suspend/TTL semantics."""

from __future__ import annotations

import datetime as dt

import pytest
from omoai_operator import transitions as tr
from omoai_operator.failures import Failure
from omoai_operator.patch import diff, merge_patch
from omoai_operator.pipeline import STAGES, StageOutcome, Written, plan
from omoai_operator.reconcile import decide
from omoai_operator.spec import JobSpec
from omoai_operator.status import JobStatus, stamp

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def spec(**kw: object) -> JobSpec:
    base = {
        "source": {"url": "https://a.example/x.wav"},
        "output": {"pvc": {"claimName": "d", "path": "o"}, "formats": ["json"]},
    }
    return JobSpec.model_validate(base | kw)


EMPTY = JobStatus()
ASR, PUNCTUATE = STAGES["asr"], STAGES["punctuate"]


def running(s: JobSpec, now: dt.datetime = T0) -> JobStatus:
    status = tr.initialize(s, now, 1).status
    return tr.stage_started(s, status, ASR, now, 1).status


def test_new_job_is_initialised_pending_with_its_plan() -> None:
    s = spec()
    assert decide(s, EMPTY, T0).kind == "init"
    t = tr.initialize(s, T0, 3)
    wire = t.status.wire()
    assert wire["phase"] == "Pending" and wire["observedGeneration"] == 3
    assert wire["attempts"] == 0 and wire["retries"] == 0
    assert "asr, punctuate, summarize, topics, write" in wire["message"]
    assert t.event == tr.Event("Normal", "Created", wire["message"])


def test_plan_skips_disabled_postprocessing_steps() -> None:
    def names(s: JobSpec) -> tuple[str, ...]:
        return tuple(stage.name for stage in plan(s))

    assert names(spec(postprocess={"punctuation": False, "summary": "none", "topics": False})) == ("asr", "write")
    assert names(spec(postprocess={"topics": False})) == ("asr", "punctuate", "summarize", "write")


def test_the_services_a_job_needs_follow_its_plan() -> None:
    from omoai_operator.cli import _needs_llm
    from omoai_operator.pipeline import Service, services_needed

    bare = spec(postprocess={"punctuation": False, "summary": "none", "topics": False})
    assert services_needed(bare) == {Service.ASR} and not _needs_llm(bare)
    only_topics = spec(postprocess={"punctuation": False, "summary": "none", "topics": True})
    assert services_needed(only_topics) == {Service.ASR, Service.LLM} and _needs_llm(only_topics)
    assert [s.service for s in plan(spec())] == [Service.ASR, Service.LLM, Service.LLM, Service.LLM, None]


def test_stages_run_in_order_and_the_phase_follows_the_stage() -> None:
    s = spec()
    status = tr.initialize(s, T0, 1).status
    seen = []
    for _ in range(5):
        d = decide(s, status, T0)
        assert d.kind == "run" and d.stage is not None
        status = tr.stage_started(s, status, d.stage, T0).status
        seen.append((d.stage.name, status.wire()["phase"]))
        outcome = StageOutcome()
        if d.stage.name == "write":
            outcome = StageOutcome(written=Written("pvc://d/o/", ("pvc://d/o/x.json",)), summary="A summary")
        status = tr.stage_succeeded(s, status, d.stage, T0, 1.0, outcome).status
    assert seen == [
        ("asr", "Transcribing"),
        ("punctuate", "PostProcessing"),
        ("summarize", "PostProcessing"),
        ("topics", "PostProcessing"),
        ("write", "PostProcessing"),
    ]
    assert status.progress == "100%"
    assert decide(s, status, T0).kind == "complete"
    done = tr.complete(status, T0).status
    wire = done.wire()
    assert wire["phase"] == "Succeeded" and wire["results"]["files"] == ["pvc://d/o/x.json"]
    assert wire["summary"] == "A summary" and wire["message"] == "1 file(s) written to pvc://d/o/"
    assert done.is_true("Complete") and decide(s, done, T0).kind == "finished"


def test_start_time_is_set_once_at_admission() -> None:
    s = spec()
    status = running(s, T0)
    assert status.wire()["startTime"] == "2026-03-01T12:00:00Z" and status.is_true("Admitted")
    later = tr.stage_started(s, status, PUNCTUATE, T0 + dt.timedelta(seconds=30)).status
    assert later.wire()["startTime"] == status.wire()["startTime"]


def test_retryable_failure_backs_off_exponentially_until_the_backoff_limit() -> None:
    s = spec(backoffLimit=2)
    status = running(s)
    fail = Failure("ServiceUnavailable", "ASR down", retryable=True)
    delays = []
    for _ in range(2):
        after = tr.stage_failed(s, status, ASR, fail, T0, tr.Backoff(10, 360))
        assert not after.failed
        delays.append(after.retry_in_s)
        status = after.transition.status
        assert after.transition.event is not None
        assert status.reason == "Retrying" and after.transition.event.type == "Warning"
    assert delays == [10, 20]
    after = tr.stage_failed(s, status, ASR, fail, T0, tr.Backoff(10, 360))
    assert after.failed
    status = after.transition.status
    assert status.phase == "Failed" and status.reason == "BackoffLimitExceeded"
    assert status.message is not None
    assert "3 time(s), more than backoffLimit=2" in status.message and "ASR down" in status.message
    assert status.is_true("Failed") and status.retries == 3


def test_backoff_limit_zero_fails_on_the_first_retryable_error() -> None:
    s = spec(backoffLimit=0)
    after = tr.stage_failed(s, running(s), ASR, Failure("Timeout", "t", retryable=True), T0, tr.Backoff())
    assert after.failed


def test_permanent_failure_fails_at_once_with_its_own_reason() -> None:
    s = spec(backoffLimit=5)
    after = tr.stage_failed(s, running(s), ASR, Failure("InvalidAudio", "not audio", retryable=False), T0, tr.Backoff())
    status = after.transition.status
    assert after.failed and status.reason == "InvalidAudio" and status.message == "asr: not audio"
    assert (status.retries or 0) == 0


def test_backoff_is_capped_and_honours_retry_after() -> None:
    b = tr.Backoff(10, 60)
    assert [b.delay(n) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]
    assert b.delay(1, retry_after_s=30) == 30


def test_deadline_wins_over_retries() -> None:
    s = spec(backoffLimit=100, activeDeadlineSeconds=60)
    status = running(s, T0)
    after = tr.stage_failed(
        s,
        status,
        ASR,
        Failure("ServiceUnavailable", "x", retryable=True),
        T0 + dt.timedelta(seconds=55),
        tr.Backoff(10, 360),
    )
    assert after.retry_in_s == pytest.approx(5.0)  # sleep until the deadline, not past it
    status = after.transition.status
    d = decide(s, status, T0 + dt.timedelta(seconds=60))
    assert d.kind == "fail" and d.reason == "DeadlineExceeded"
    assert d.message is not None and "activeDeadlineSeconds=60" in d.message


def test_deadline_counts_from_admission_not_creation() -> None:
    s = spec(activeDeadlineSeconds=10)
    pending = tr.initialize(s, T0, 1).status
    assert decide(s, pending, T0 + dt.timedelta(hours=1)).kind == "run"  # queued an hour: no deadline yet


def test_suspend_pauses_and_resume_restarts_the_deadline_clock() -> None:
    s = spec(activeDeadlineSeconds=60)
    status = running(s, T0)
    paused = spec(activeDeadlineSeconds=60, suspend=True)
    assert decide(paused, status, T0).kind == "suspend"
    status = tr.suspend(status, T0).status
    assert decide(paused, status, T0 + dt.timedelta(hours=2)).kind == "suspended"  # no deadline while paused
    assert decide(s, status, T0 + dt.timedelta(hours=2)).kind == "resume"
    resumed_at = T0 + dt.timedelta(hours=2)
    status = tr.resume(status, resumed_at).status
    assert status.wire()["startTime"] == stamp(resumed_at)
    assert not status.is_true("Suspended")
    assert decide(s, status, resumed_at + dt.timedelta(seconds=30)).kind == "run"


def test_finished_job_with_ttl_expires_at_completion_plus_ttl() -> None:
    s = spec(ttlSecondsAfterFinished=300)
    status = JobStatus.from_wire({"phase": "Succeeded", "completionTime": "2026-03-01T12:00:00Z"})
    d = decide(s, status, T0)
    assert d.kind == "expire" and d.at == T0 + dt.timedelta(seconds=300)
    assert decide(spec(), status, T0).kind == "finished"


def test_queued_sets_the_phase_only_before_the_first_stage() -> None:
    s = spec()
    pending = tr.initialize(s, T0, 1).status
    t = tr.queued(pending, ASR, 3)
    patch = diff(pending.wire(), t.status.wire())
    assert patch["phase"] == "Queued" and patch["queuePosition"] == 3 and t.event is not None
    assert "ASR capacity (position 3)" in patch["message"]
    mid = running(s)
    t = tr.queued(mid, PUNCTUATE, 2)
    patch = diff(mid.wire(), t.status.wire())
    assert "phase" not in patch and patch["queuePosition"] == 2 and t.event is None
    assert "LLM capacity (position 2)" in patch["message"]
    waiting = tr.queued(pending, ASR, 1).status
    started = tr.stage_started(s, waiting, ASR, T0).status
    patch = diff(waiting.wire(), started.wire())
    assert patch["queuePosition"] is None  # cleared (merge patch null) when the stage starts


def test_conditions_keep_their_transition_time_when_unchanged() -> None:
    status = EMPTY.with_condition("Suspended", True, "Suspended", "m", T0)
    again = status.with_condition("Suspended", True, "Suspended", "m2", T0 + dt.timedelta(minutes=1)).wire()
    assert again["conditions"][0]["lastTransitionTime"] == stamp(T0) and again["conditions"][0]["message"] == "m2"
    flipped = status.with_condition("Suspended", False, "Resumed", "r", T0 + dt.timedelta(minutes=1)).wire()
    assert flipped["conditions"][0]["lastTransitionTime"] == stamp(T0 + dt.timedelta(minutes=1))


def test_real_time_factor_is_recorded_when_the_job_ends() -> None:
    s = spec()
    status = running(s, T0).evolve(audio_duration_seconds=100.0)
    t = tr.complete(status, T0 + dt.timedelta(seconds=25))
    assert t.status.wire()["realTimeFactor"] == 0.25


def test_merge_patch_follows_rfc7386() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": None, "e": 3}, "d": [2]}) == {
        "a": {"c": 2, "e": 3},
        "d": [2],
    }


def test_the_patch_between_two_statuses_turns_one_into_the_other() -> None:
    s = spec()
    transcribed = tr.stage_succeeded(s, running(s), ASR, T0, 1.0, StageOutcome(audio_duration_s=3.0)).status
    before = tr.stage_started(s, transcribed, PUNCTUATE, T0).status
    failure = Failure("TranscriptMissing", "gone", retryable=True, redo="asr")
    after = tr.stage_failed(s, before, PUNCTUATE, failure, T0, tr.Backoff()).transition.status
    patch = diff(before.wire(), after.wire())
    assert patch["stages"]["asr"] is None  # the stage whose result vanished is to be redone
    assert patch["stages"]["punctuate"] == {"state": "Failed", "message": "TranscriptMissing: gone"}
    assert decide(s, after, T0).stage == ASR
    assert merge_patch(before.wire(), patch) == after.wire()
    assert JobStatus.from_wire(merge_patch(before.wire(), patch)) == after
