"""The TranscriptionJob state machine, pure: given the spec, the status and the time, what happens
next (a :class:`Decision`). The status changes that carry a decision out are in
:mod:`omoai_operator.transitions`.

Semantics follow the Kubernetes Job controller where they overlap: ``backoffLimit`` counts
retryable failures over the whole job; ``activeDeadlineSeconds`` runs from ``startTime`` (the
moment the job is admitted, as with Kueue) and wins over retries; suspending stops the clock and
resuming restarts it (the Job controller resets ``startTime`` on resume); ``ttlSecondsAfterFinished``
counts from ``completionTime``. Nothing here touches Kubernetes, the network or the clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from omoai_operator.pipeline import Stage, plan
from omoai_operator.spec import JobSpec
from omoai_operator.status import JobStatus, Reason


class DecisionKind(StrEnum):
    INIT = "init"  # a new job: initialise its status
    FINISHED = "finished"  # terminal, nothing to do
    EXPIRE = "expire"  # terminal with a TTL: delete at ``at``
    FAIL = "fail"  # fail with ``reason`` and ``message``
    SUSPEND = "suspend"  # the spec asks to suspend: do it
    SUSPENDED = "suspended"  # suspended: wait for the spec to change
    RESUME = "resume"  # no longer asked to be suspended
    RUN = "run"  # run ``stage``
    COMPLETE = "complete"  # every stage done: succeed


@dataclass(frozen=True)
class Decision:
    """What to do next; the fields beyond ``kind`` are set for the kinds that need them."""

    kind: DecisionKind
    stage: Stage | None = None
    reason: str | None = None
    message: str | None = None
    at: dt.datetime | None = None


def next_stage(spec: JobSpec, status: JobStatus) -> Stage | None:
    return next((s for s in plan(spec) if not status.stage_done(s.name)), None)


def decide(spec: JobSpec, status: JobStatus, now: dt.datetime) -> Decision:
    if status.terminal:
        if spec.ttl_seconds_after_finished is None:
            return Decision(DecisionKind.FINISHED)
        done = status.completion_time or now
        return Decision(DecisionKind.EXPIRE, at=done + dt.timedelta(seconds=spec.ttl_seconds_after_finished))
    if status.phase is None:
        return Decision(DecisionKind.INIT)
    # Suspension first: a suspended job's deadline clock is stopped (and restarts on resume).
    suspended = status.is_true("Suspended")
    if spec.suspend:
        return Decision(DecisionKind.SUSPENDED if suspended else DecisionKind.SUSPEND)
    if suspended:
        return Decision(DecisionKind.RESUME)
    limit = status.deadline(spec)
    if limit is not None and now >= limit:
        return Decision(
            DecisionKind.FAIL,
            reason=Reason.DEADLINE_EXCEEDED,
            message=f"the job ran longer than activeDeadlineSeconds={spec.active_deadline_seconds}; "
            "raise it or split the recording",
        )
    stage = next_stage(spec, status)
    if stage is None:
        return Decision(DecisionKind.COMPLETE)
    return Decision(DecisionKind.RUN, stage=stage)
