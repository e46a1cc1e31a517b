"""The TranscriptionJob status as a typed model: the one in-memory picture of a job, read from the
API server (or empty for ``omoai run``), changed only through :mod:`omoai_operator.transitions`,
and written back as the JSON merge patch between what the server has and what we hold.

Field names are the CRD's (camelCase aliases, like :mod:`omoai_operator.spec`); times are UTC at
seconds precision, as Kubernetes writes them. Unknown fields from the server are ignored: a merge
patch only touches the fields it names, so they stay where they are.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer
from pydantic.alias_generators import to_camel

if TYPE_CHECKING:
    from omoai_operator.spec import JobSpec


class Phase(StrEnum):
    PENDING = "Pending"
    QUEUED = "Queued"
    TRANSCRIBING = "Transcribing"
    POSTPROCESSING = "PostProcessing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


TERMINAL = frozenset({Phase.SUCCEEDED, Phase.FAILED})


class Reason(StrEnum):
    """``status.reason`` and event reasons (stable, CamelCase like the Job controller's). A failed
    stage may also leave the reason its failure names (``InvalidAudio``, ``ServiceUnavailable``...)."""

    CREATED = "Created"
    QUEUED = "WaitingForCapacity"
    WAITING_FOR_REPLICA = "WaitingForReplica"  # no ready endpoint: scale from zero under way
    WAITING_FOR_NAMESPACE_CAP = "WaitingForNamespaceCap"  # its namespace runs as many stages as allowed
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


def stamp(t: dt.datetime) -> str:
    """RFC 3339 with seconds precision and a Z, as Kubernetes writes times."""
    return t.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: str | None) -> dt.datetime | None:
    if not s:
        return None
    return dt.datetime.fromisoformat(s)


def _to_second(t: dt.datetime) -> dt.datetime:
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).replace(microsecond=0)


#: A status time: held exactly as it is written (UTC, whole seconds), so that a deadline computed
#: from the in-memory status is the one a restarted operator computes from the server's copy.
Timestamp = Annotated[dt.datetime, AfterValidator(_to_second), PlainSerializer(stamp, return_type=str)]

StageState = Literal["Running", "Succeeded", "Failed"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True, frozen=True)

    def evolve(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied and validated (times rounded like every other)."""
        return self.model_validate({**dict(self), **changes})


class Condition(_Model):
    type: str
    status: Literal["True", "False"]
    reason: str
    message: str
    last_transition_time: Timestamp
    observed_generation: int | None = None


class StageStatus(_Model):
    state: StageState | None = None
    attempts: int | None = None
    start_time: Timestamp | None = None
    completion_time: Timestamp | None = None
    duration_seconds: float | None = None
    message: str | None = None


def _precise(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: A time kept to the millisecond (a retry due in 1.5 s must not be rounded to now).
PreciseTime = Annotated[dt.datetime, PlainSerializer(_precise, return_type=str)]

DeliveryState = Literal["Pending", "Delivered", "Failed", "Disabled"]


class Delivery(_Model):
    """One event for one notification endpoint (``spec.notifications[endpoint]``): what the
    operator needs to resume it after a restart, and what a human reads about it. Never the key."""

    endpoint: int
    url: str  # with any secret query values redacted
    event: str
    id: str  # the ``webhook-id``: the same on every attempt of this event
    time: PreciseTime  # when the event happened (its payload's timestamp; the retry window starts here)
    state: DeliveryState  # no defaults: both always shown (the status leaves defaults out)
    attempts: int
    last_attempt_time: Timestamp | None = None
    last_http_code: int | None = None
    next_attempt_time: PreciseTime | None = None
    message: str | None = None


class Results(_Model):
    location: str
    files: tuple[str, ...] = ()


class JobStatus(_Model):
    """``status`` of a TranscriptionJob. Every field is optional: absent until a transition sets it."""

    phase: Phase | None = None
    reason: str | None = None
    message: str | None = None
    progress: str | None = None
    observed_generation: int | None = None
    attempts: int | None = None
    retries: int | None = None
    queue_position: int | None = None
    start_time: Timestamp | None = None
    completion_time: Timestamp | None = None
    stages: dict[str, StageStatus] = {}
    conditions: tuple[Condition, ...] = ()
    results: Results | None = None
    summary: str | None = None
    audio_duration_seconds: float | None = None
    audio_duration: str | None = None
    real_time_factor: float | None = None
    audio_seconds_done: float | None = None
    audio_seconds_total: float | None = None
    audio_progress: str | None = None
    summary_title: str | None = None
    notifications: tuple[Delivery, ...] = ()

    @classmethod
    def from_wire(cls, raw: Any) -> JobStatus:
        """The status as the API server (or a test) holds it: a camelCase mapping, or nothing."""
        if isinstance(raw, JobStatus):
            return raw
        return cls.model_validate(dict(raw or {}))

    def wire(self) -> dict[str, Any]:
        """The camelCase JSON the CRD stores; fields never set are left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)

    # -- queries ---------------------------------------------------------------------------------
    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL

    def stage(self, name: str) -> StageStatus:
        return self.stages.get(name) or StageStatus()

    def stage_done(self, name: str) -> bool:
        return self.stage(name).state == "Succeeded"

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def is_true(self, type_: str) -> bool:
        c = self.condition(type_)
        return c is not None and c.status == "True"

    def deadline(self, spec: JobSpec) -> dt.datetime | None:
        """When ``activeDeadlineSeconds`` runs out: counted from admission (``startTime``)."""
        if self.start_time is None or spec.active_deadline_seconds is None:
            return None
        return self.start_time + dt.timedelta(seconds=spec.active_deadline_seconds)

    # -- updates (used by the transitions) -------------------------------------------------------
    def with_stage(self, name: str, **changes: Any) -> JobStatus:
        """The status with ``changes`` merged into stage ``name`` (the fields not named are kept)."""
        return self.evolve(stages={**self.stages, name: self.stage(name).evolve(**changes)})

    def without_stage(self, name: str) -> JobStatus:
        return self.evolve(stages={k: v for k, v in self.stages.items() if k != name})

    def with_condition(
        self, type_: str, value: bool, reason: str, message: str, now: dt.datetime, generation: int | None = None
    ) -> JobStatus:
        """The status with one condition set; its ``lastTransitionTime`` moves only when it flips."""
        status: Literal["True", "False"] = "True" if value else "False"
        out: list[Condition] = []
        found = False
        for c in self.conditions:
            if c.type == type_:
                found = True
                c = c.evolve(
                    status=status,
                    reason=reason,
                    message=message,
                    last_transition_time=now if c.status != status else c.last_transition_time,
                    observed_generation=generation if generation is not None else c.observed_generation,
                )
            out.append(c)
        if not found:
            out.append(
                Condition(
                    type=type_,
                    status=status,
                    reason=reason,
                    message=message,
                    last_transition_time=now,
                    observed_generation=generation,
                )
            )
        return self.evolve(conditions=tuple(out))
