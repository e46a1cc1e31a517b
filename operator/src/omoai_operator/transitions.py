"""The status changes of a TranscriptionJob, pure: each takes the status and returns the next one
(a :class:`Transition`), plus the Kubernetes event that tells a human about it.

Events mark phase transitions, retries, suspensions and failures; a stage's progress lives in
``status.stages`` only, which keeps the event stream readable and cheap.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Literal

from omoai_core.durations import clock

from omoai_operator.failures import Failure
from omoai_operator.pipeline import Stage, StageOutcome, plan
from omoai_operator.spec import JobSpec
from omoai_operator.status import JobStatus, Phase, Reason, Results


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Transition:
    """The status after a change, and the event that tells a human about it."""

    status: JobStatus
    event: Event | None = None


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``base * 2**(n-1)`` for the n-th retry, capped (Job: 10 s doubling to 6 min)."""

    base_s: float = 10.0
    cap_s: float = 360.0

    def delay(self, retries: int, retry_after_s: float | None = None) -> float:
        exp = min(self.cap_s, self.base_s * 2.0 ** max(0, retries - 1))
        return max(exp, retry_after_s or 0.0)


@dataclass(frozen=True)
class AfterFailure:
    transition: Transition
    retry_in_s: float | None = None  # None: the job failed
    failed: bool = False


def progress(spec: JobSpec, status: JobStatus, partial: float = 0.0) -> str:
    """The share of the job done: each stage an equal share, the running one counted by ``partial``
    (the ASR stage: audio seconds transcribed / total), rounded down while a stage is under way."""
    stages = plan(spec)
    done = sum(status.stage_done(s.name) for s in stages)
    if partial > 0:
        return f"{math.floor(100 * (done + min(partial, 0.999)) / len(stages))}%"
    return f"{round(100 * done / len(stages))}%"


def audio_progress(spec: JobSpec, status: JobStatus, done_s: float, total_s: float) -> JobStatus:
    """While transcribing: how much of the recording the ASR service has decoded (its streamed answer)."""
    done_s = min(done_s, total_s) if total_s > 0 else done_s
    return status.evolve(
        audio_seconds_done=round(done_s, 1),
        audio_seconds_total=round(total_s, 1),
        audio_progress=f"{clock(done_s, hours=True)} / {clock(total_s, hours=True)}",
        progress=progress(spec, status, done_s / total_s if total_s > 0 else 0.0),
    )


def initialize(spec: JobSpec, now: dt.datetime, generation: int | None) -> Transition:
    message = "accepted; stages: " + ", ".join(s.name for s in plan(spec))
    status = JobStatus(
        phase=Phase.PENDING,
        reason=Reason.CREATED,
        message=message,
        progress="0%",
        attempts=0,
        retries=0,
        observed_generation=generation,
    )
    return Transition(status, Event("Normal", Reason.CREATED, message))


def observed(status: JobStatus, generation: int) -> Transition:
    """The spec changed (suspend, priority, limits): say it was seen."""
    return Transition(status.evolve(observed_generation=generation))


def queued(
    status: JobStatus,
    stage: Stage,
    position: int,
    replicas: int | None = None,
    namespace: str = "",
    namespace_cap: int | None = None,
) -> Transition:
    """Waiting for a slot of the stage's service; only transcription moves the phase to Queued.

    ``namespace_cap`` is set while the job's namespace runs as many stages as its cap allows: the
    job waits for one of them to end, not for capacity, and says so, once. ``replicas`` is the
    number of ready endpoints of the service (None where it is not known): with none ready the job
    is waiting for a replica to start (scale from zero), and says so, once."""
    service = stage.service.value if stage.service is not None else stage.name
    event = None
    reason: Reason | str | None
    if namespace_cap is not None:
        reason = Reason.WAITING_FOR_NAMESPACE_CAP
        message = (
            f"waiting for a running job of namespace {namespace or '?'} to finish: it runs {namespace_cap}, "
            f"its cap (position {position} for {service.upper()})"
        )
        if status.reason != reason:
            event = Event("Normal", reason, message)
    elif replicas == 0:
        reason = Reason.WAITING_FOR_REPLICA
        message = (
            f"waiting for an {service.upper()} replica to start: none is ready (position {position}); "
            "queued work is what wakes the autoscaler"
        )
        if status.reason != Reason.WAITING_FOR_REPLICA:
            event = Event("Normal", Reason.WAITING_FOR_REPLICA, message)
    else:
        message = f"waiting for {service.upper()} capacity (position {position})"
        # A replica came, or the namespace is under its cap again: now only the line is in the way.
        waited_for_other = status.reason in (Reason.WAITING_FOR_REPLICA, Reason.WAITING_FOR_NAMESPACE_CAP)
        reason = Reason.QUEUED if waited_for_other else None
    if stage.phase is Phase.TRANSCRIBING and status.phase in (Phase.PENDING, None):
        reason = reason or Reason.QUEUED
        after = status.evolve(queue_position=position, message=message, phase=Phase.QUEUED, reason=reason)
        return Transition(after, Event("Normal", reason, message))
    if reason is not None:
        return Transition(status.evolve(queue_position=position, message=message, reason=reason), event)
    return Transition(status.evolve(queue_position=position, message=message), event)


def stage_started(
    spec: JobSpec, status: JobStatus, stage: Stage, now: dt.datetime, generation: int | None = None
) -> Transition:
    attempts = (status.stage(stage.name).attempts or 0) + 1
    after = status.with_stage(stage.name, state="Running", attempts=attempts, start_time=now).evolve(
        phase=stage.phase,
        reason=Reason.STAGE_STARTED,
        message=f"{stage.name}: attempt {attempts}",
        queue_position=None,
        attempts=(status.attempts or 0) + 1,
        start_time=status.start_time or now,
    )
    if not status.is_true("Admitted"):
        after = after.with_condition("Admitted", True, Reason.ADMITTED, "capacity granted", now, generation)
    event = None
    if status.phase != stage.phase:
        event = Event("Normal", stage.phase.value, f"{stage.phase.value}: {stage.name} started")
    return Transition(after, event)


def stage_succeeded(
    spec: JobSpec, status: JobStatus, stage: Stage, now: dt.datetime, duration_s: float, outcome: StageOutcome
) -> Transition:
    entry = status.stage(stage.name)
    after = status.with_stage(
        stage.name,
        state="Succeeded",
        completion_time=now,
        duration_seconds=round(duration_s, 3),
        # found already done in storage (restart after the work finished): no attempt of ours
        attempts=entry.attempts if entry.attempts is not None else 0,
    )
    changes: dict[str, object] = {
        "progress": progress(spec, after),
        "reason": Reason.STAGE_SUCCEEDED,
        "message": f"{stage.name} done in {duration_s:.2f}s",
    }
    if outcome.audio_duration_s is not None:
        total = outcome.audio_duration_s
        changes |= {
            "audio_duration_seconds": round(total, 3),
            "audio_duration": clock(total, hours=True),
            # all of it, streamed or not (a service that does not stream jumps here from nothing)
            "audio_seconds_done": round(total, 1),
            "audio_seconds_total": round(total, 1),
            "audio_progress": f"{clock(total, hours=True)} / {clock(total, hours=True)}",
        }
    if outcome.written is not None:
        changes["results"] = Results(location=outcome.written.location, files=outcome.written.files)
    if outcome.summary:
        changes["summary"] = outcome.summary[:2000]
    if outcome.summary_title:
        changes["summary_title"] = outcome.summary_title[:500]
    return Transition(after.evolve(**changes))


def stage_failed(
    spec: JobSpec, status: JobStatus, stage: Stage, failure: Failure, now: dt.datetime, backoff: Backoff
) -> AfterFailure:
    """Retry with backoff while ``retries <= backoffLimit`` and the deadline allows; else fail.
    A stage named by ``failure.redo`` (its stored result is gone) is marked as not done."""
    if failure.redo is not None:
        status = status.without_stage(failure.redo)
    if not failure.retryable:
        return AfterFailure(
            fail(status, failure.reason, f"{stage.name}: {failure.message}", now, stage=stage), failed=True
        )
    retries = (status.retries or 0) + 1
    if retries > spec.backoff_limit:
        message = (
            f"{stage.name} failed {retries} time(s), more than backoffLimit={spec.backoff_limit}; "
            f"last error ({failure.reason}): {failure.message}"
        )
        t = fail(status, Reason.BACKOFF_LIMIT_EXCEEDED, message, now, stage=stage)
        return AfterFailure(Transition(t.status.evolve(retries=retries), t.event), failed=True)
    delay = backoff.delay(retries, failure.retry_after_s)
    limit = status.deadline(spec)
    message = (
        f"{stage.name} failed ({failure.reason}): {failure.message}; "
        f"retry {retries}/{spec.backoff_limit} in {delay:.1f}s"
    )
    after = status.with_stage(stage.name, state="Failed", message=f"{failure.reason}: {failure.message}"[:1000]).evolve(
        retries=retries, reason=Reason.RETRYING, message=message
    )
    if limit is not None and now + dt.timedelta(seconds=delay) >= limit:
        # The deadline comes first: wait for it, then DeadlineExceeded (decide() says so).
        delay = max(0.0, (limit - now).total_seconds())
    return AfterFailure(Transition(after, Event("Warning", Reason.RETRYING, message)), retry_in_s=delay)


def fail(status: JobStatus, reason: str, message: str, now: dt.datetime, stage: Stage | None = None) -> Transition:
    after = status.with_condition("Failed", True, reason, message[:1000], now).evolve(
        phase=Phase.FAILED,
        reason=str(reason),
        message=message[:4000],
        completion_time=now,
        queue_position=None,
        real_time_factor=_real_time_factor(status, now),
    )
    if stage is not None:
        after = after.with_stage(stage.name, state="Failed", message=message[:1000])
    return Transition(after, Event("Warning", str(reason), message[:1000]))


def complete(status: JobStatus, now: dt.datetime) -> Transition:
    """Succeed with the results the write stage recorded."""
    results = status.results or Results(location="")
    message = f"{len(results.files)} file(s) written to {results.location}"
    after = status.with_condition("Complete", True, Reason.COMPLETED, message, now).evolve(
        phase=Phase.SUCCEEDED,
        reason=Reason.COMPLETED,
        message=message,
        completion_time=now,
        progress="100%",
        queue_position=None,
        results=results,
        real_time_factor=_real_time_factor(status, now),
    )
    return Transition(after, Event("Normal", Reason.COMPLETED, message))


def _real_time_factor(status: JobStatus, now: dt.datetime) -> float | None:
    if status.start_time is None or not status.audio_duration_seconds:
        return status.real_time_factor
    return round((now - status.start_time).total_seconds() / status.audio_duration_seconds, 4)


def suspend(status: JobStatus, now: dt.datetime) -> Transition:
    message = "suspended; set spec.suspend=false to resume"
    after = status.with_condition("Suspended", True, Reason.SUSPENDED, message, now).evolve(
        reason=Reason.SUSPENDED, message=message, queue_position=None
    )
    return Transition(after, Event("Normal", Reason.SUSPENDED, message))


def resume(status: JobStatus, now: dt.datetime) -> Transition:
    message = "resumed"
    after = status.with_condition("Suspended", False, Reason.RESUMED, message, now).evolve(
        reason=Reason.RESUMED, message=message
    )
    if status.start_time is not None:
        after = after.evolve(start_time=now)  # as the Job controller: the deadline clock restarts
    return Transition(after, Event("Normal", Reason.RESUMED, message))
