"""Webhook deliveries as status records, pure: which events a status change raises
(:func:`raised`), the records they add to ``status.notifications`` (:func:`enqueue`), and what an
attempt's answer does to its record (:func:`after_attempt`).

The rules: a 2xx delivers; 410 Gone disables that endpoint for the rest of the job; 408, 429, 5xx
and no answer at all (time-out, refused connection) are retried with exponential back-off and
jitter, never before ``Retry-After``, until the retry window counted from the event runs out; any
other answer (4xx, a redirect) stops. Everything the retries need is in the record, so an operator
that restarts, or a standby replica that takes over, resumes where the last one stopped.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from omoai_core.redact import redact_url

from omoai_operator.spec import JobSpec, NotificationEvent
from omoai_operator.status import Delivery, JobStatus, Phase
from omoai_operator.webhooks import message_id

Outcome = Literal["delivered", "retry", "rejected", "disabled", "gave_up"]
#: Every outcome (the bounded ``outcome`` label of the deliveries metric).
OUTCOMES: tuple[Outcome, ...] = ("delivered", "retry", "rejected", "disabled", "gave_up")
#: Outcomes that end a delivery without success: each posts a Warning event.
GIVE_UPS: frozenset[Outcome] = frozenset({"rejected", "disabled", "gave_up"})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off ``base * 2**(n-1)`` capped at ``cap_s``, with "equal jitter" (a uniform
    draw in the upper half, so replicas and jobs that failed together do not retry together)."""

    base_s: float = 5.0
    cap_s: float = 300.0
    window_s: float = 86400.0
    timeout_s: float = 10.0

    def delay(self, attempts: int, retry_after_s: float | None, rand: Callable[[], float] = random.random) -> float:
        d = min(self.cap_s, self.base_s * 2.0 ** max(0, attempts - 1))
        return max(d / 2 + rand() * d / 2, retry_after_s or 0.0)


@dataclass(frozen=True)
class Attempt:
    """What one POST came to. ``status`` None: no HTTP answer (time-out, connection refused)."""

    status: int | None
    error: str | None = None
    retry_after_s: float | None = None
    permanent: bool = False  # refused before sending (an address the guard forbids): not retried
    duration_s: float = 0.0


def retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


def raised(before: JobStatus, after: JobStatus) -> list[NotificationEvent]:
    """The job events between two statuses: started (admitted: its first stage got capacity),
    succeeded, failed."""
    events: list[NotificationEvent] = []
    if not before.is_true("Admitted") and after.is_true("Admitted"):
        events.append("started")
    if after.phase != before.phase:
        if after.phase is Phase.SUCCEEDED:
            events.append("succeeded")
        elif after.phase is Phase.FAILED:
            events.append("failed")
    return events


def enqueue(
    spec: JobSpec, status: JobStatus, events: Sequence[NotificationEvent], uid: str, now: dt.datetime
) -> JobStatus:
    """``status`` with a Pending record per wanted event and endpoint (none twice; none for an
    endpoint that answered 410 earlier in this job)."""
    if not events or not spec.notifications:
        return status
    records = list(status.notifications)
    known = {(d.endpoint, d.event) for d in records}
    gone = {d.endpoint for d in records if d.state == "Disabled"}
    for i, endpoint in enumerate(spec.notifications):
        for event in events:
            if event in endpoint.events and (i, event) not in known and i not in gone:
                records.append(
                    Delivery(
                        endpoint=i,
                        url=redact_url(endpoint.url),
                        event=event,
                        id=message_id(uid, i, event),
                        time=now,
                        state="Pending",
                        attempts=0,
                        next_attempt_time=now,
                    )
                )
    return status.evolve(notifications=tuple(records))


def pending(status: JobStatus) -> list[Delivery]:
    return [d for d in status.notifications if d.state == "Pending"]


def after_attempt(
    d: Delivery,
    a: Attempt,
    now: dt.datetime,
    policy: RetryPolicy,
    rand: Callable[[], float] = random.random,
) -> tuple[Delivery, Outcome]:
    """The record after one attempt, and what became of it."""
    attempts = d.attempts + 1
    base = d.evolve(attempts=attempts, last_attempt_time=now, last_http_code=a.status, next_attempt_time=None)
    code = a.status
    if code is not None and 200 <= code < 300:
        return base.evolve(state="Delivered", message=None), "delivered"
    if code == 410:
        message = "the endpoint answered 410 Gone: no more deliveries to it for this job"
        return base.evolve(state="Disabled", message=message), "disabled"
    what = a.error or (f"HTTP {code}" if code is not None else "no answer")
    retryable = not a.permanent and (code is None or code in (408, 429) or code >= 500)
    if not retryable:
        return base.evolve(state="Failed", message=f"{what}: not retried"[:1000]), "rejected"
    due = now + dt.timedelta(seconds=policy.delay(attempts, a.retry_after_s, rand))
    if due > d.time + dt.timedelta(seconds=policy.window_s):
        message = f"gave up after {attempts} attempt(s) within {policy.window_s:.0f}s; last: {what}"
        return base.evolve(state="Failed", message=message[:1000]), "gave_up"
    return base.evolve(next_attempt_time=due, message=what[:1000]), "retry"


def replace(status: JobStatus, record: Delivery) -> JobStatus:
    """``status`` with ``record`` in place of the one for the same endpoint and event; a disabled
    endpoint takes its other pending events with it."""
    out = []
    for d in status.notifications:
        if (d.endpoint, d.event) == (record.endpoint, record.event):
            d = record
        elif record.state == "Disabled" and d.endpoint == record.endpoint and d.state == "Pending":
            d = d.evolve(state="Disabled", next_attempt_time=None, message=record.message)
        out.append(d)
    return status.evolve(notifications=tuple(out))
