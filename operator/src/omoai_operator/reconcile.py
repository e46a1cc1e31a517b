"""The TranscriptionJob state machine, pure: given the spec, the status and the time, what happens
next, and the status patch (plus the Kubernetes event) of every transition.

Semantics follow the Kubernetes Job controller where they overlap: ``backoffLimit`` counts
retryable failures over the whole job; ``activeDeadlineSeconds`` runs from ``startTime`` (the
moment the job is admitted, as with Kueue) and wins over retries; suspending stops the clock and
resuming restarts it (the Job controller resets ``startTime`` on resume); ``ttlSecondsAfterFinished``
counts from ``completionTime``. Nothing here touches Kubernetes, the network or the clock.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from omoai_operator.spec import JobSpec


class Phase(StrEnum):
    PENDING = "Pending"
    QUEUED = "Queued"
    TRANSCRIBING = "Transcribing"
    POSTPROCESSING = "PostProcessing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


TERMINAL = frozenset({Phase.SUCCEEDED, Phase.FAILED})

Stage = Literal["asr", "punctuate", "summarize", "topics", "write"]
#: Which service a stage needs a slot of (``write`` only touches storage).
STAGE_SERVICE: Mapping[str, str | None] = {
    "asr": "asr",
    "punctuate": "llm",
    "summarize": "llm",
    "topics": "llm",
    "write": None,
}
STAGE_PHASE: Mapping[str, Phase] = {
    "asr": Phase.TRANSCRIBING,
    "punctuate": Phase.POSTPROCESSING,
    "summarize": Phase.POSTPROCESSING,
    "topics": Phase.POSTPROCESSING,
    "write": Phase.POSTPROCESSING,
}


# -- reasons (stable, CamelCase like the Job controller's) ---------------------------------------
class Reason(StrEnum):
    CREATED = "Created"
    QUEUED = "WaitingForCapacity"
    WAITING_FOR_REPLICA = "WaitingForReplica"
    ADMITTED = "Admitted"
    STAGE_STARTED = "StageStarted"
    STAGE_SUCCEEDED = "StageSucceeded"
    RETRYING = "Retrying"
    SUSPENDED = "Suspended"
    RESUMED = "Resumed"
    COMPLETED = "Completed"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    INVALID_SPEC = "InvalidSpec"


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Transition:
    """A status merge patch and the event that tells a human about it."""

    patch: dict[str, Any]
    event: Event | None = None


@dataclass(frozen=True)
class Decision:
    """What to do next.

    ``kind``: ``init`` (new job), ``finished`` (terminal, nothing to do), ``expire`` (terminal with a
    TTL: delete at ``at``), ``fail`` (``reason``/``message``), ``suspend``, ``suspended`` (wait for
    the spec to change), ``resume``, ``run`` (``stage``), ``complete``.
    """

    kind: Literal["init", "finished", "expire", "fail", "suspend", "suspended", "resume", "run", "complete"]
    stage: str | None = None
    reason: str | None = None
    message: str | None = None
    at: dt.datetime | None = None


@dataclass(frozen=True)
class Failure:
    """A failed stage attempt as the clients classify it (the two-word vocabulary: retryable or not)."""

    reason: str
    message: str
    retryable: bool
    retry_after_s: float | None = None


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``base * 2**(n-1)`` for the n-th retry, capped (Job: 10 s doubling to 6 min)."""

    base_s: float = 10.0
    cap_s: float = 360.0

    def delay(self, retries: int, retry_after_s: float | None = None) -> float:
        exp = min(self.cap_s, self.base_s * (2 ** max(0, retries - 1)))
        return max(exp, retry_after_s or 0.0)


@dataclass(frozen=True)
class AfterFailure:
    transition: Transition
    retry_in_s: float | None = None  # None: the job failed
    failed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# -- time helpers --------------------------------------------------------------------------------
def stamp(t: dt.datetime) -> str:
    """RFC 3339 with seconds precision and a Z, as Kubernetes writes times."""
    return t.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp_precise(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: str | None) -> dt.datetime | None:
    if not s:
        return None
    return dt.datetime.fromisoformat(s)


def clock(seconds: float) -> str:
    total = round(seconds)
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


# -- plan ----------------------------------------------------------------------------------------
def plan(spec: JobSpec) -> tuple[str, ...]:
    """The stages of a job, in order."""
    stages: list[str] = ["asr"]
    if spec.postprocess.punctuation:
        stages.append("punctuate")
    if spec.postprocess.summary != "none":
        stages.append("summarize")
    if spec.postprocess.topics:
        stages.append("topics")
    stages.append("write")
    return tuple(stages)


def stage_done(status: Mapping[str, Any], stage: str) -> bool:
    return (status.get("stages") or {}).get(stage, {}).get("state") == "Succeeded"


def next_stage(spec: JobSpec, status: Mapping[str, Any]) -> str | None:
    for stage in plan(spec):
        if not stage_done(status, stage):
            return stage
    return None


def progress(spec: JobSpec, status: Mapping[str, Any]) -> str:
    stages = plan(spec)
    done = sum(stage_done(status, s) for s in stages)
    return f"{round(100 * done / len(stages))}%"


def condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for c in status.get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def is_true(status: Mapping[str, Any], type_: str) -> bool:
    c = condition(status, type_)
    return c is not None and c.get("status") == "True"


def deadline(spec: JobSpec, status: Mapping[str, Any]) -> dt.datetime | None:
    start = parse_time(status.get("startTime"))
    if start is None or spec.active_deadline_seconds is None:
        return None
    return start + dt.timedelta(seconds=spec.active_deadline_seconds)


# -- decide --------------------------------------------------------------------------------------
def decide(spec: JobSpec, status: Mapping[str, Any], now: dt.datetime) -> Decision:
    phase = status.get("phase")
    if phase in TERMINAL:
        if spec.ttl_seconds_after_finished is None:
            return Decision("finished")
        done = parse_time(status.get("completionTime")) or now
        return Decision("expire", at=done + dt.timedelta(seconds=spec.ttl_seconds_after_finished))
    if not phase:
        return Decision("init")
    # Suspension first: a suspended job's deadline clock is stopped (and restarts on resume).
    suspended = is_true(status, "Suspended")
    if spec.suspend:
        return Decision("suspended" if suspended else "suspend")
    if suspended:
        return Decision("resume")
    limit = deadline(spec, status)
    if limit is not None and now >= limit:
        return Decision(
            "fail",
            reason=Reason.DEADLINE_EXCEEDED,
            message=f"the job ran longer than activeDeadlineSeconds={spec.active_deadline_seconds}; "
            "raise it or split the recording",
        )
    stage = next_stage(spec, status)
    if stage is None:
        return Decision("complete")
    return Decision("run", stage=stage)


# -- transitions ---------------------------------------------------------------------------------
def set_condition(
    status: Mapping[str, Any],
    type_: str,
    value: bool,
    reason: str,
    message: str,
    now: dt.datetime,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """The whole conditions list with one condition set (merge patches replace lists)."""
    out: list[dict[str, Any]] = []
    found = False
    for c in status.get("conditions") or []:
        if c.get("type") == type_:
            found = True
            changed = c.get("status") != ("True" if value else "False")
            c = {
                **c,
                "status": "True" if value else "False",
                "reason": reason,
                "message": message,
                "lastTransitionTime": stamp(now) if changed else c.get("lastTransitionTime", stamp(now)),
            }
            if generation is not None:
                c["observedGeneration"] = generation
        out.append(dict(c))
    if not found:
        c = {
            "type": type_,
            "status": "True" if value else "False",
            "reason": reason,
            "message": message,
            "lastTransitionTime": stamp(now),
        }
        if generation is not None:
            c["observedGeneration"] = generation
        out.append(c)
    return out


def initialize(spec: JobSpec, now: dt.datetime, generation: int | None) -> Transition:
    patch: dict[str, Any] = {
        "phase": Phase.PENDING.value,
        "reason": Reason.CREATED.value,
        "message": "accepted; stages: " + ", ".join(plan(spec)),
        "progress": "0%",
        "attempts": 0,
        "retries": 0,
    }
    if generation is not None:
        patch["observedGeneration"] = generation
    return Transition(patch, Event("Normal", Reason.CREATED, patch["message"]))


def queued(
    status: Mapping[str, Any], stage: str, service: str, position: int, replicas: int | None = None
) -> Transition:
    """Waiting for a slot of ``service``; only the first stage changes the phase to Queued.

    ``replicas`` is the number of ready endpoints of the service (None where it is not known): with
    none ready the job is waiting for a replica to start (scale from zero), and says so."""
    patch: dict[str, Any] = {"queuePosition": position}
    event = None
    if replicas == 0:
        message = (f"waiting for an {service.upper()} replica to start: none is ready (position {position}); "
                   "queued work is what wakes the autoscaler")
        patch |= {"message": message, "reason": Reason.WAITING_FOR_REPLICA.value}
        if status.get("reason") != Reason.WAITING_FOR_REPLICA:
            event = Event("Normal", Reason.WAITING_FOR_REPLICA, message)
    else:
        message = f"waiting for {service.upper()} capacity (position {position})"
        patch["message"] = message
        if status.get("reason") == Reason.WAITING_FOR_REPLICA:
            patch["reason"] = Reason.QUEUED.value  # a replica came: now only the line is in the way
    if stage == "asr" and status.get("phase") in (Phase.PENDING, None):
        patch |= {"phase": Phase.QUEUED.value, "reason": patch.get("reason", Reason.QUEUED.value)}
        event = Event("Normal", patch["reason"], message)
    return Transition(patch, event)


def stage_started(
    spec: JobSpec, status: Mapping[str, Any], stage: str, now: dt.datetime, generation: int | None = None
) -> Transition:
    stages = status.get("stages") or {}
    attempts = int(stages.get(stage, {}).get("attempts", 0)) + 1
    phase = STAGE_PHASE[stage]
    message = f"{stage}: attempt {attempts}"
    patch: dict[str, Any] = {
        "phase": phase.value,
        "reason": Reason.STAGE_STARTED.value,
        "message": message,
        "queuePosition": None,
        "attempts": int(status.get("attempts", 0)) + 1,
        "stages": {stage: {"state": "Running", "attempts": attempts, "startTime": stamp(now)}},
    }
    if not status.get("startTime"):
        patch["startTime"] = stamp(now)
    if not is_true(status, "Admitted"):
        patch["conditions"] = set_condition(status, "Admitted", True, Reason.ADMITTED, "capacity granted", now, generation)
    event = None
    if status.get("phase") != phase.value:
        event = Event("Normal", phase.value, f"{phase.value}: {stage} started")
    return Transition(patch, event)


def stage_succeeded(
    spec: JobSpec, status: Mapping[str, Any], stage: str, now: dt.datetime, duration_s: float, extra: Mapping[str, Any]
) -> Transition:
    stages = status.get("stages") or {}
    entry: dict[str, Any] = {"state": "Succeeded", "completionTime": stamp(now), "durationSeconds": round(duration_s, 3)}
    if "attempts" not in stages.get(stage, {}):
        entry["attempts"] = 0  # found already done in storage (restart after the work finished)
    merged = merge_patch(dict(status), {"stages": {stage: entry}})
    patch: dict[str, Any] = {
        "stages": {stage: entry},
        "progress": progress(spec, merged),
        "reason": Reason.STAGE_SUCCEEDED.value,
        "message": f"{stage} done in {duration_s:.2f}s",
        **extra,
    }
    # No event: stage progress lives in status.stages; events mark phase transitions (and
    # retries, suspensions, failures), which keeps the event stream readable and cheap.
    return Transition(patch)


def stage_failed(
    spec: JobSpec,
    status: Mapping[str, Any],
    stage: str,
    failure: Failure,
    now: dt.datetime,
    backoff: Backoff,
) -> AfterFailure:
    """Retry with backoff while ``retries <= backoffLimit`` and the deadline allows; else fail."""
    if not failure.retryable:
        return AfterFailure(fail(status, failure.reason, f"{stage}: {failure.message}", now, stage=stage), failed=True)
    retries = int(status.get("retries", 0)) + 1
    if retries > spec.backoff_limit:
        message = (
            f"{stage} failed {retries} time(s), more than backoffLimit={spec.backoff_limit}; "
            f"last error ({failure.reason}): {failure.message}"
        )
        t = fail(status, Reason.BACKOFF_LIMIT_EXCEEDED, message, now, stage=stage)
        t.patch["retries"] = retries
        return AfterFailure(t, failed=True)
    delay = backoff.delay(retries, failure.retry_after_s)
    limit = deadline(spec, status)
    message = f"{stage} failed ({failure.reason}): {failure.message}; retry {retries}/{spec.backoff_limit} in {delay:.1f}s"
    patch = {
        "retries": retries,
        "reason": Reason.RETRYING.value,
        "message": message,
        "stages": {stage: {"state": "Failed", "message": f"{failure.reason}: {failure.message}"[:1000]}},
    }
    if limit is not None and now + dt.timedelta(seconds=delay) >= limit:
        # The deadline comes first: wait for it, then DeadlineExceeded (decide() says so).
        delay = max(0.0, (limit - now).total_seconds())
    return AfterFailure(Transition(patch, Event("Warning", Reason.RETRYING, message)), retry_in_s=delay)


def fail(status: Mapping[str, Any], reason: str, message: str, now: dt.datetime, stage: str | None = None) -> Transition:
    patch: dict[str, Any] = {
        "phase": Phase.FAILED.value,
        "reason": str(reason),
        "message": message[:4000],
        "completionTime": stamp(now),
        "queuePosition": None,
        "conditions": set_condition(status, "Failed", True, reason, message[:1000], now),
    }
    if stage is not None:
        patch["stages"] = {stage: {"state": "Failed", "message": message[:1000]}}
    _add_timings(patch, status, now)
    return Transition(patch, Event("Warning", str(reason), message[:1000]))


def complete(
    spec: JobSpec, status: Mapping[str, Any], now: dt.datetime, location: str, files: Sequence[str], summary: str | None
) -> Transition:
    message = f"{len(files)} file(s) written to {location}"
    patch: dict[str, Any] = {
        "phase": Phase.SUCCEEDED.value,
        "reason": Reason.COMPLETED.value,
        "message": message,
        "completionTime": stamp(now),
        "progress": "100%",
        "queuePosition": None,
        "results": {"location": location, "files": list(files)},
        "conditions": set_condition(status, "Complete", True, Reason.COMPLETED, message, now),
    }
    if summary:
        patch["summary"] = summary[:2000]
    _add_timings(patch, status, now)
    return Transition(patch, Event("Normal", Reason.COMPLETED, message))


def _add_timings(patch: dict[str, Any], status: Mapping[str, Any], now: dt.datetime) -> None:
    start = parse_time(status.get("startTime"))
    audio = status.get("audioDurationSeconds")
    if start is not None and audio:
        patch["realTimeFactor"] = round((now - start).total_seconds() / float(audio), 4)


def suspend(status: Mapping[str, Any], now: dt.datetime) -> Transition:
    message = "suspended; set spec.suspend=false to resume"
    patch = {
        "reason": Reason.SUSPENDED.value,
        "message": message,
        "queuePosition": None,
        "conditions": set_condition(status, "Suspended", True, Reason.SUSPENDED, message, now),
    }
    return Transition(patch, Event("Normal", Reason.SUSPENDED, message))


def resume(status: Mapping[str, Any], now: dt.datetime) -> Transition:
    message = "resumed"
    patch: dict[str, Any] = {
        "reason": Reason.RESUMED.value,
        "message": message,
        "conditions": set_condition(status, "Suspended", False, Reason.RESUMED, message, now),
    }
    if status.get("startTime"):
        patch["startTime"] = stamp(now)  # as the Job controller: the deadline clock restarts
    return Transition(patch, Event("Normal", Reason.RESUMED, message))


# -- status bookkeeping --------------------------------------------------------------------------
def merge_patch(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch (``None`` deletes), returning a new dict."""
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, Mapping):
            out[k] = merge_patch(out.get(k) if isinstance(out.get(k), dict) else {}, v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def compose_patches(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """One merge patch with the effect of ``first`` then ``second`` (``None`` deletions kept)."""
    out = copy.deepcopy(dict(first))
    for k, v in second.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = compose_patches(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out
