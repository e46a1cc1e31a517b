"""``omoai_operator_*`` metrics, registered on an injected registry (tests build a fresh one)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from omoai_core.metrics import DURATION_BUCKETS
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from omoai_operator.placement import EndpointPool
from omoai_operator.status import Phase

#: Queue waits can reach hours when capacity is short: same buckets as durations.
WAIT_BUCKETS = DURATION_BUCKETS
#: Label values created at registration (at 0), so that ``increase()`` and the alerts built on it
#: count the very first event instead of seeing a series appear.
STAGES = ("asr", "punctuate", "summarize", "topics", "write")
STAGE_OUTCOMES = ("succeeded", "failed", "deadline")
ERROR_KINDS = ("driver", "tidy", "notify")
#: The bounded ``outcome`` label of webhook delivery attempts (:data:`omoai_operator.deliveries.OUTCOMES`).
DELIVERY_OUTCOMES = ("delivered", "retry", "rejected", "disabled", "gave_up")
#: Webhook attempts take milliseconds to the per-attempt time-out.
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Seconds between heartbeats; the OmoaiOperatorNotReconciling alert allows several missed ones.
HEARTBEAT_INTERVAL_S = 10.0
#: The ``namespace`` label of the per-namespace queue series beyond the busiest N: never a
#: namespace's name (an underscore is not allowed in one).
OTHER_NAMESPACES = "_other"
#: The bounded ``reason`` label of failed jobs; any other reason is counted as Other.
FAILURE_REASONS = (
    "AudioNotFound",
    "AudioTooLarge",
    "BackoffLimitExceeded",
    "DeadlineExceeded",
    "InvalidAudio",
    "InvalidRequest",
    "InvalidSecret",
    "InvalidSpec",
    "SecretForbidden",
    "SecretNotFound",
    "ServiceError",
    "UnsupportedMedia",
    "UpstreamProtocolError",
    "VolumeNotShared",
    "Other",
)


@dataclass(frozen=True)
class OperatorMetrics:
    jobs: Gauge
    job_duration: Histogram
    stage_duration: Histogram
    retries: Counter
    queue_depth: Gauge
    in_flight: Gauge
    queue_wait: Histogram
    reconcile_errors: Counter
    transitions: Counter
    endpoints: Gauge
    slots: Gauge
    slots_used: Gauge
    discovery: Gauge
    wakeups: Counter
    failures: Counter
    heartbeat: Gauge
    deliveries: Counter
    delivery_duration: Histogram
    delivery_lag: Histogram
    deliveries_pending: Gauge
    namespace_depth: Gauge
    namespace_in_flight: Gauge
    top_namespaces: int = 10
    _namespaces_shown: dict[str, set[str]] = field(default_factory=dict, compare=False)
    _wakeups_seen: dict[str, int] = field(default_factory=dict, compare=False)

    @classmethod
    def create(cls, registry: CollectorRegistry, top_namespaces: int = 10) -> OperatorMetrics:
        m = cls(
            jobs=Gauge(
                "omoai_operator_jobs",
                "TranscriptionJobs known to this operator, by phase.",
                ["phase"],
                registry=registry,
            ),
            job_duration=Histogram(
                "omoai_operator_job_duration_seconds",
                "Time from start (admission) to finish, by outcome.",
                ["outcome"],
                buckets=DURATION_BUCKETS,
                registry=registry,
            ),
            stage_duration=Histogram(
                "omoai_operator_stage_duration_seconds",
                "Wall time of one stage attempt.",
                ["stage", "outcome"],
                buckets=DURATION_BUCKETS,
                registry=registry,
            ),
            retries=Counter(
                "omoai_operator_retries", "Retryable stage failures that were retried.", ["stage"], registry=registry
            ),
            queue_depth=Gauge(
                "omoai_operator_queue_depth", "Jobs waiting for a slot, by service.", ["service"], registry=registry
            ),
            in_flight=Gauge("omoai_operator_in_flight", "Slots held, by service.", ["service"], registry=registry),
            queue_wait=Histogram(
                "omoai_operator_queue_wait_seconds",
                "Time waited for a slot.",
                ["service"],
                buckets=WAIT_BUCKETS,
                registry=registry,
            ),
            reconcile_errors=Counter(
                "omoai_operator_reconcile_errors", "Unexpected errors while driving a job.", ["kind"], registry=registry
            ),
            transitions=Counter("omoai_operator_transitions", "Phase transitions.", ["phase"], registry=registry),
            endpoints=Gauge(
                "omoai_operator_endpoints",
                "Ready endpoints (replicas) of each service taking stages.",
                ["service"],
                registry=registry,
            ),
            slots=Gauge(
                "omoai_operator_slots",
                "Stage slots of each service: ready endpoints x slots per endpoint.",
                ["service"],
                registry=registry,
            ),
            slots_used=Gauge(
                "omoai_operator_slots_used", "Slots of ready endpoints running a stage.", ["service"], registry=registry
            ),
            discovery=Gauge(
                "omoai_operator_endpoint_discovery",
                "1 while capacity follows the service's EndpointSlices, 0 on the fixed Service URL.",
                ["service"],
                registry=registry,
            ),
            wakeups=Counter(
                "omoai_operator_replica_wakeups",
                "Times a service went from no ready endpoint to one while stages waited (scale from zero).",
                ["service"],
                registry=registry,
            ),
            failures=Counter(
                "omoai_operator_job_failures",
                "Jobs that ended Failed, by reason (bounded).",
                ["reason"],
                registry=registry,
            ),
            heartbeat=Gauge(
                "omoai_operator_heartbeat_timestamp_seconds",
                "Unix time of the operator loop's last heartbeat (every few seconds, jobs or not).",
                registry=registry,
            ),
            deliveries=Counter(
                "omoai_operator_notification_attempts",
                "Webhook delivery attempts, by outcome (delivered, retry, rejected, disabled, gave_up).",
                ["outcome"],
                registry=registry,
            ),
            delivery_duration=Histogram(
                "omoai_operator_notification_attempt_duration_seconds",
                "Wall time of one webhook delivery attempt.",
                buckets=DELIVERY_BUCKETS,
                registry=registry,
            ),
            delivery_lag=Histogram(
                "omoai_operator_notification_delivery_seconds",
                "Time from a job event to its successful delivery (retries included).",
                buckets=DURATION_BUCKETS,
                registry=registry,
            ),
            deliveries_pending=Gauge(
                "omoai_operator_notifications_pending",
                "Webhook events not yet delivered, given up or disabled.",
                registry=registry,
            ),
            namespace_depth=Gauge(
                "omoai_operator_namespace_queue_depth",
                f"Jobs waiting for a slot, by service and namespace (the busiest namespaces; the rest under "
                f"namespace={OTHER_NAMESPACES!r}).",
                ["service", "namespace"],
                registry=registry,
            ),
            namespace_in_flight=Gauge(
                "omoai_operator_namespace_in_flight",
                f"Slots held, by service and namespace (the busiest namespaces; the rest under "
                f"namespace={OTHER_NAMESPACES!r}).",
                ["service", "namespace"],
                registry=registry,
            ),
            top_namespaces=top_namespaces,
        )
        for p in Phase:
            m.jobs.labels(phase=p.value).set(0)
            m.transitions.labels(phase=p.value)
        for s in ("asr", "llm"):
            m.queue_depth.labels(service=s).set(0)
            m.in_flight.labels(service=s).set(0)
            m.endpoints.labels(service=s).set(0)
            m.slots.labels(service=s).set(0)
            m.slots_used.labels(service=s).set(0)
            m.discovery.labels(service=s).set(0)
            m.wakeups.labels(service=s)
            m.namespace_depth.labels(service=s, namespace=OTHER_NAMESPACES).set(0)
            m.namespace_in_flight.labels(service=s, namespace=OTHER_NAMESPACES).set(0)
        for stage in STAGES:
            m.retries.labels(stage=stage)
            for outcome in STAGE_OUTCOMES:
                m.stage_duration.labels(stage=stage, outcome=outcome)
        for outcome in (Phase.SUCCEEDED.value, Phase.FAILED.value):
            m.job_duration.labels(outcome=outcome)
        for s in ("asr", "llm"):
            m.queue_wait.labels(service=s)
        for kind in ERROR_KINDS:
            m.reconcile_errors.labels(kind=kind)
        for reason in FAILURE_REASONS:
            m.failures.labels(reason=reason)
        for outcome in DELIVERY_OUTCOMES:
            m.deliveries.labels(outcome=outcome)
        m.heartbeat.set_to_current_time()
        return m

    async def beat(self, interval_s: float = HEARTBEAT_INTERVAL_S) -> None:
        """Stamp the heartbeat gauge forever (a task on the operator's event loop): a stalled or
        wedged loop stops the stamps whether or not any job exists."""
        while True:
            self.heartbeat.set_to_current_time()
            await asyncio.sleep(interval_s)

    def job_failed(self, reason: str | None) -> None:
        self.failures.labels(reason=reason if reason in FAILURE_REASONS else "Other").inc()

    def observe_capacity(self, pool: EndpointPool) -> None:
        s = pool.service
        self.endpoints.labels(service=s).set(pool.ready_count())
        self.slots.labels(service=s).set(pool.capacity())
        self.slots_used.labels(service=s).set(pool.busy_slots())
        self.discovery.labels(service=s).set(1 if pool.origin == "endpointslices" else 0)
        seen = self._wakeups_seen.get(s, 0)
        if pool.wakeups > seen:
            self.wakeups.labels(service=s).inc(pool.wakeups - seen)
            self._wakeups_seen[s] = pool.wakeups

    def observe_queue(
        self,
        service: str,
        depth: int,
        in_flight: int,
        waited: float | None,
        by_namespace: Mapping[str, tuple[int, int]],
    ) -> None:
        self.queue_depth.labels(service=service).set(depth)
        self.in_flight.labels(service=service).set(in_flight)
        if waited is not None:
            self.queue_wait.labels(service=service).observe(waited)
        self._observe_namespaces(service, by_namespace)

    def _observe_namespaces(self, service: str, by_namespace: Mapping[str, tuple[int, int]]) -> None:
        """The busiest ``top_namespaces`` namespaces get their own series, the rest one sum: the
        label's cardinality stays bounded however many namespaces submit jobs."""
        ranked = sorted(by_namespace.items(), key=lambda kv: (-(kv[1][0] + kv[1][1]), kv[0]))
        top, rest = ranked[: self.top_namespaces], ranked[self.top_namespaces :]
        shown = {ns for ns, _ in top}
        for ns in self._namespaces_shown.get(service, set()) - shown:
            self.namespace_depth.remove(service, ns)
            self.namespace_in_flight.remove(service, ns)
        for ns, (waiting, holding) in top:
            self.namespace_depth.labels(service=service, namespace=ns).set(waiting)
            self.namespace_in_flight.labels(service=service, namespace=ns).set(holding)
        self.namespace_depth.labels(service=service, namespace=OTHER_NAMESPACES).set(sum(w for _, (w, _h) in rest))
        self.namespace_in_flight.labels(service=service, namespace=OTHER_NAMESPACES).set(sum(h for _, (_w, h) in rest))
        self._namespaces_shown[service] = shown


class PhaseBook:
    """Which phase each job is in, kept so the ``jobs{phase}`` gauge is exact."""

    def __init__(self, metrics: OperatorMetrics) -> None:
        self.metrics = metrics
        self.phases: dict[str, str] = {}

    def set(self, key: str, phase: str | None) -> None:
        old = self.phases.get(key)
        if old == phase:
            return
        if old is not None:
            self.metrics.jobs.labels(phase=old).dec()
        if phase is None:
            self.phases.pop(key, None)
        else:
            self.phases[key] = phase
            self.metrics.jobs.labels(phase=phase).inc()
            if old is not None:
                self.metrics.transitions.labels(phase=phase).inc()
