"""One job's life: ask :func:`reconcile.decide` what is next, do it (wait for capacity, run a
stage, back off, pause), write the transition, repeat until the job is finished.

The same driver runs in the operator (a kopf daemon per job, status written to the API server)
and in ``omoai run`` (status kept in memory and logged): the :class:`StatusSink` is the seam.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, assert_never

from omoai_core.errors import InvalidInputError

from omoai_operator import deliveries
from omoai_operator import transitions as tr
from omoai_operator.failures import Failure, StageError
from omoai_operator.fairness import Ticket
from omoai_operator.locations import Locations
from omoai_operator.metrics import OperatorMetrics, PhaseBook
from omoai_operator.notifier import Notifier
from omoai_operator.patch import diff
from omoai_operator.pipeline import JobContext, Pipeline, Stage
from omoai_operator.placement import Grant
from omoai_operator.queue import CapacityQueue, Position
from omoai_operator.reconcile import Decision, DecisionKind, decide
from omoai_operator.spec import JobSpec, parse_spec
from omoai_operator.status import TERMINAL, Delivery, JobStatus, Phase, Reason
from omoai_operator.webhooks import JobIdentity

log = logging.getLogger(__name__)

#: After an unexpected error in the delivery loop, the pause before it looks again.
DELIVERY_PAUSE_S = 1.0


class JobGone(Exception):
    """The job was deleted under us: stop quietly."""


class StatusSink(Protocol):
    async def patch(self, patch: Mapping[str, Any]) -> None: ...
    async def event(self, event: tr.Event) -> None: ...


@dataclass(frozen=True)
class JobRef:
    namespace: str
    name: str
    uid: str
    created: dt.datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Runtime:
    """What all jobs of one process share."""

    pipeline: Pipeline
    queue: CapacityQueue
    locations: Locations
    metrics: OperatorMetrics
    backoff: tr.Backoff = field(default_factory=tr.Backoff)
    notifier: Notifier | None = None
    suspend_poll_s: float = 0.5
    progress_interval_s: float = 5.0
    position_interval_s: float = 0.5
    now: Callable[[], dt.datetime] = utcnow
    phases: PhaseBook = field(init=False)

    def __post_init__(self) -> None:
        self.phases = PhaseBook(self.metrics)


class JobDriver:
    """Drives one job. ``status`` is the job's one in-memory status; ``_written`` is what the sink
    holds, and the merge patch between the two is what the next write sends."""

    def __init__(
        self,
        runtime: Runtime,
        ref: JobRef,
        sink: StatusSink,
        read_spec: Callable[[], Mapping[str, Any] | None],
        status: JobStatus | Mapping[str, Any] | None,
        generation: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.rt = runtime
        self.ref = ref
        self.sink = sink
        self.read_spec = read_spec
        self.generation = generation
        self.status = JobStatus.from_wire(status)
        self._written = self.status
        self._ctx: JobContext | None = None
        self._flushing = asyncio.Lock()  # the job loop and the delivery loop both write
        self._spec: JobSpec | None = None  # the last valid spec (what deliveries are sent by)
        self._wake = asyncio.Event()  # a delivery became due
        self._spec_known = asyncio.Event()  # deliveries wait for the spec they are sent by
        self._pending_counted = 0
        self._progress_written = 0.0

    # -- bookkeeping -----------------------------------------------------------------------------
    async def apply(self, t: tr.Transition, *, defer: bool = False) -> None:
        """Record a transition. ``defer`` holds the write back to go out with the next one (a stage's
        end with the next stage's start: half the writes); anything that waits flushes first."""
        before = self.status.phase
        self._set_status(t.status)
        if not defer:
            await self.flush()
        if t.event is not None:
            await self.sink.event(t.event)
        after = self.status.phase
        self.rt.phases.set(self.ref.key, after)
        if after != before and after in TERMINAL:
            start = self.status.start_time or self.ref.created
            end = self.status.completion_time
            if start and end:
                self.rt.metrics.job_duration.labels(outcome=after).observe(max(0.0, (end - start).total_seconds()))

    def _set_status(self, after: JobStatus) -> None:
        """The one place the in-memory status changes: job events it raises become deliveries."""
        events = deliveries.raised(self.status, after)
        if events and self._spec is not None and self._spec.notifications:
            after = deliveries.enqueue(self._spec, after, events, self.ref.uid, self.rt.now())
            self._wake.set()
        self.status = after
        self._count_pending()

    def _count_pending(self) -> None:
        n = len(deliveries.pending(self.status))
        if n != self._pending_counted:
            self.rt.metrics.deliveries_pending.inc(n - self._pending_counted)
            self._pending_counted = n

    async def flush(self) -> None:
        async with self._flushing:  # one write at a time, each the diff from the last one sent
            status = self.status
            patch = diff(self._written.wire(), status.wire())
            if patch:
                await self.sink.patch(patch)
            self._written = status

    def spec(self) -> JobSpec:
        return parse_spec(dict(self.read_spec() or {}))

    async def context(self, spec: JobSpec) -> JobContext:
        if self._ctx is None or self._ctx.spec.source != spec.source or self._ctx.spec.output != spec.output:
            store = await self.rt.locations.store(spec, self.ref.namespace, self.ref.uid)
            url = await self.rt.locations.audio_url(spec, self.ref.namespace)
            path = self.rt.locations.local_audio(spec)
            self._ctx = JobContext(
                self.ref.key, self.ref.name, self.ref.uid, spec, store, url, path, self._audio_progress
            )
        else:
            self._ctx = dataclasses.replace(self._ctx, spec=spec)
        return self._ctx

    # -- the loop --------------------------------------------------------------------------------
    async def run(self) -> Decision:
        """Drive until the job is finished; returns the last decision (``finished`` or ``expire``).
        Webhook deliveries run beside the job (never delaying it) and are waited for at the end."""
        self.rt.phases.set(self.ref.key, self.status.phase)
        self._count_pending()
        sending = asyncio.ensure_future(self._deliver())
        try:
            d = await self._run()
            await self._drain(sending, d)
            return d
        finally:
            if not sending.done():
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sending
            self.rt.metrics.deliveries_pending.dec(self._pending_counted)
            self._pending_counted = 0

    async def _run(self) -> Decision:
        while True:
            now = self.rt.now()
            try:
                spec = self.spec()
            except InvalidInputError as e:
                if not self.status.terminal:
                    self.rt.metrics.job_failed(Reason.INVALID_SPEC)
                    await self.apply(tr.fail(self.status, Reason.INVALID_SPEC, e.message, now))
                return Decision(DecisionKind.FINISHED)
            d = decide(spec, self.status, now)
            if d.kind is DecisionKind.INIT and spec.notifications and self.rt.notifier is not None:
                try:  # refused before anything runs: nothing half-done
                    await self.rt.notifier.check(spec, self.ref.namespace)
                except InvalidInputError as e:
                    self.rt.metrics.job_failed(Reason.INVALID_SPEC)
                    await self.apply(tr.fail(self.status, Reason.INVALID_SPEC, e.message, now))
                    return Decision(DecisionKind.FINISHED)
            self._spec = spec
            self._spec_known.set()
            generation = self.generation()
            if (
                d.kind is not DecisionKind.INIT
                and generation is not None
                and self.status.observed_generation != generation
            ):
                await self.apply(tr.observed(self.status, generation), defer=True)
            match d.kind:
                case DecisionKind.FINISHED | DecisionKind.EXPIRE:
                    await self.flush()
                    await self._tidy(spec)
                    return d
                case DecisionKind.INIT:
                    await self.apply(tr.initialize(spec, now, generation))
                case DecisionKind.FAIL:
                    await self._end(spec, tr.fail(self.status, d.reason or "Failed", d.message or "", now))
                case DecisionKind.SUSPEND:
                    await self.apply(tr.suspend(self.status, now))
                case DecisionKind.SUSPENDED:
                    await self.flush()
                    await asyncio.sleep(self.rt.suspend_poll_s)
                case DecisionKind.RESUME:
                    await self.apply(tr.resume(self.status, now))
                case DecisionKind.COMPLETE:
                    await self._end(spec, tr.complete(self.status, now))
                case DecisionKind.RUN:
                    assert d.stage is not None
                    await self._run_stage(spec, d.stage)
                case unknown:
                    assert_never(unknown)

    async def _audio_progress(self, done_s: float, total_s: float) -> None:
        """The ASR service decoded another window. Kept in memory at once; written at most once per
        ``progress_interval_s`` (thousands of running jobs must not flood the API server): the
        stage's end writes the final numbers anyway."""
        spec = self._spec
        if spec is None or self.status.terminal:
            return
        self.status = tr.audio_progress(spec, self.status, done_s, total_s)
        now = time.monotonic()
        if now - self._progress_written >= self.rt.progress_interval_s:
            self._progress_written = now
            await self.flush()

    # -- webhook deliveries ----------------------------------------------------------------------
    async def _drain(self, sending: asyncio.Future[None], d: Decision) -> None:
        """Wait for the deliveries still due and the status write of the last attempt (the delivery
        loop ends by itself once the job is finished and nothing is pending), at most until the job
        is to be deleted (TTL)."""
        if sending.done() or self._spec is None:
            return
        limit = None if d.at is None else max(0.0, (d.at - self.rt.now()).total_seconds())
        self._wake.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(sending), timeout=limit)

    async def _deliver(self) -> None:
        """Send every pending delivery when it is due, until the job is finished and none is left.
        Nothing here can fail or delay the job: errors are logged and counted."""
        try:
            await self._spec_known.wait()
            while True:
                due = deliveries.pending(self.status)
                if not due:
                    if self.status.terminal:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                first = min(due, key=lambda r: r.next_attempt_time or r.time)
                wait = ((first.next_attempt_time or first.time) - self.rt.now()).total_seconds()
                if wait > 0:
                    self._wake.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=wait)
                    continue
                try:
                    await self._attempt_delivery(first)
                except JobGone:
                    raise
                except Exception:
                    # e.g. the status write failed for a while: the record in memory is current and
                    # goes out with the next write; try again shortly rather than stop delivering.
                    log.exception("webhook delivery of %s failed unexpectedly; retrying", self.ref.key)
                    self.rt.metrics.reconcile_errors.labels(kind="notify").inc()
                    await asyncio.sleep(DELIVERY_PAUSE_S)
        except JobGone:
            return

    async def _attempt_delivery(self, d: Delivery) -> None:
        notifier, spec = self.rt.notifier, self._spec
        now = self.rt.now()
        if notifier is None or spec is None or d.endpoint >= len(spec.notifications):
            attempt = deliveries.Attempt(None, "the endpoint is no longer in spec.notifications", permanent=True)
            policy = deliveries.RetryPolicy()
        else:
            job = JobIdentity(self.ref.namespace, self.ref.name, self.ref.uid)
            attempt = await notifier.send(spec.notifications[d.endpoint], d, job, self.status, now)
            policy = notifier.policy
            now = self.rt.now()
        record, outcome = deliveries.after_attempt(d, attempt, now, policy)
        m = self.rt.metrics
        m.deliveries.labels(outcome=outcome).inc()
        m.delivery_duration.observe(attempt.duration_s)
        if outcome == "delivered":
            m.delivery_lag.observe(max(0.0, (now - d.time).total_seconds()))
        self.status = deliveries.replace(self.status, record)
        self._count_pending()
        await self.flush()
        if outcome in deliveries.GIVE_UPS:
            # The key is never in the record, and URLs are redacted: safe for an event and a log.
            message = f"{d.event} notification to {d.url} ({d.id}): {record.message}"
            log.warning("%s: %s", self.ref.key, message)
            await self.sink.event(tr.Event("Warning", "NotificationFailed", message))

    async def _end(self, spec: JobSpec, t: tr.Transition) -> None:
        """Finish: stage results recorded first, then the staging area dropped (and, on failure,
        anything half committed), then the terminal phase, so that a job seen as Succeeded or
        Failed has nothing left in staging. A crash in between is safe: completing needs nothing
        from staging, and a failure is simply reached again (at worst after one more attempt)."""
        await self.flush()
        succeeded = t.status.phase is Phase.SUCCEEDED
        if not succeeded:
            self.rt.metrics.job_failed(t.status.reason)
        await self._tidy(spec, succeeded=succeeded)
        await self.apply(t)

    async def _tidy(self, spec: JobSpec, *, succeeded: bool | None = None) -> None:
        """After the end: drop the staging area (and on failure anything half committed)."""
        try:
            ctx = await self.context(spec)
            if succeeded is None:
                succeeded = self.status.phase is Phase.SUCCEEDED
            if succeeded:
                await ctx.store.finalize()
            else:
                await ctx.store.discard()
        except StageError as e:
            log.debug("nothing to tidy for %s: %s", self.ref.key, e)
        except Exception:  # tidying must never turn a finished job into an error loop
            log.exception("tidying %s failed", self.ref.key)
            self.rt.metrics.reconcile_errors.labels(kind="tidy").inc()

    async def _run_stage(self, spec: JobSpec, stage: Stage) -> None:
        started = asyncio.Event()
        work = asyncio.ensure_future(self._attempt(spec, stage, started))
        try:
            # While waiting for capacity, a suspend request takes the job out of the line.
            while not work.done():
                await asyncio.wait({work}, timeout=self.rt.suspend_poll_s)
                if not work.done() and not started.is_set() and self._suspend_requested():
                    work.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await work
                    return
            retry_in = work.result()
        finally:
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await work
        if retry_in is not None:
            await self._sleep_until_retry(spec, retry_in)

    def _suspend_requested(self) -> bool:
        return (self.read_spec() or {}).get("suspend") is True

    async def _sleep_until_retry(self, spec: JobSpec, delay: float) -> None:
        end = time.monotonic() + delay
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, self.rt.suspend_poll_s))
            if self._suspend_requested():
                return

    @contextlib.asynccontextmanager
    async def _slot(self, stage: Stage) -> AsyncIterator[Grant | None]:
        """Hold a slot of the stage's service (none for a stage that only touches storage)."""
        service = stage.service
        if service is None:
            yield None
            return
        ticket = Ticket(
            key=self.ref.key, priority=self._priority(), created=self.ref.created, namespace=self.ref.namespace
        )

        async def on_position(p: Position) -> None:
            await self.apply(
                tr.queued(self.status, stage, p.position, p.ready_endpoints, self.ref.namespace, p.namespace_cap)
            )

        # At most one position patch per interval, the last one current (a trailing update, not a
        # dropped one); the queue keeps the interval, so a granted slot never waits for it.
        async with self.rt.queue.slot(service, ticket, on_position, self.rt.position_interval_s) as grant:
            yield grant

    def _priority(self) -> int:
        try:
            return int((self.read_spec() or {}).get("priority", 0))
        except (TypeError, ValueError):
            return 0

    async def _attempt(self, spec: JobSpec, stage: Stage, started: asyncio.Event) -> float | None:
        """One attempt of one stage; returns the retry delay, or None when no retry is due."""
        try:
            ctx = await self.context(spec)
            if await self.rt.pipeline.is_staged(stage, ctx):
                # Done before a restart: record it without a slot, an attempt or a service call.
                started.set()
                outcome = await self.rt.pipeline.run_stage(stage, ctx)
                await self.apply(tr.stage_succeeded(spec, self.status, stage, self.rt.now(), 0.0, outcome), defer=True)
                return None
        except StageError as e:
            return await self._failed(spec, stage, e.failure)
        async with contextlib.AsyncExitStack() as stack:
            try:
                # Waiting for capacity after the start counts against the deadline too.
                async with _deadline(self.status.deadline(spec), self.rt.now):
                    grant = await stack.enter_async_context(self._slot(stage))
            except TimeoutError:
                return None  # decide() now says DeadlineExceeded
            started.set()
            now = self.rt.now()
            await self.apply(tr.stage_started(spec, self.status, stage, now, self.generation()))
            limit = self.status.deadline(spec)
            t0 = time.monotonic()
            try:
                async with _deadline(limit, self.rt.now):
                    outcome = await self.rt.pipeline.run_stage(stage, ctx, grant)
            except TimeoutError:
                self.rt.metrics.stage_duration.labels(stage=stage.name, outcome="deadline").observe(
                    time.monotonic() - t0
                )
                return None  # decide() now says DeadlineExceeded
            except StageError as e:
                self.rt.metrics.stage_duration.labels(stage=stage.name, outcome="failed").observe(time.monotonic() - t0)
                return await self._failed(spec, stage, e.failure)
            self.rt.metrics.stage_duration.labels(stage=stage.name, outcome="succeeded").observe(outcome.duration_s)
            await self.apply(
                tr.stage_succeeded(spec, self.status, stage, self.rt.now(), outcome.duration_s, outcome), defer=True
            )
        return None

    async def _failed(self, spec: JobSpec, stage: Stage, failure: Failure) -> float | None:
        after = tr.stage_failed(spec, self.status, stage, failure, self.rt.now(), self.rt.backoff)
        if after.failed:
            await self._end(spec, after.transition)
            log.info("%s failed in %s: %s", self.ref.key, stage.name, failure.message)
            return None
        await self.apply(after.transition)
        self.rt.metrics.retries.labels(stage=stage.name).inc()
        log.info("%s: %s failed (%s), retrying in %.1fs", self.ref.key, stage.name, failure.reason, after.retry_in_s)
        return after.retry_in_s


@contextlib.asynccontextmanager
async def _deadline(limit: dt.datetime | None, now: Callable[[], dt.datetime]) -> AsyncIterator[None]:
    if limit is None:
        yield
        return
    loop = asyncio.get_running_loop()
    left = (limit - now()).total_seconds()
    async with asyncio.timeout_at(loop.time() + max(0.0, left)):
        yield


async def drive_until_stopped(driver: JobDriver, stopped: Any) -> Decision | None:
    """Run ``driver`` until it finishes or ``stopped`` (an awaitable flag) fires; in-flight work is
    cancelled at once (the ASR/LLM request is dropped, its connection closed)."""
    work = asyncio.ensure_future(driver.run())
    stop = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        cancelled = not work.done()
        if cancelled:
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, JobGone):
                await work
    return None if cancelled else work.result()
