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

from omoai_operator import transitions as tr
from omoai_operator.failures import Failure, StageError
from omoai_operator.fairness import Ticket
from omoai_operator.locations import Locations
from omoai_operator.metrics import OperatorMetrics, PhaseBook
from omoai_operator.patch import diff
from omoai_operator.pipeline import JobContext, Pipeline, Stage
from omoai_operator.placement import Grant
from omoai_operator.queue import CapacityQueue, Position
from omoai_operator.reconcile import Decision, DecisionKind, decide
from omoai_operator.spec import JobSpec, parse_spec
from omoai_operator.status import TERMINAL, JobStatus, Phase, Reason

log = logging.getLogger(__name__)


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
    suspend_poll_s: float = 0.5
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

    # -- bookkeeping -----------------------------------------------------------------------------
    async def apply(self, t: tr.Transition, *, defer: bool = False) -> None:
        """Record a transition. ``defer`` holds the write back to go out with the next one (a stage's
        end with the next stage's start: half the writes); anything that waits flushes first."""
        before = self.status.phase
        self.status = t.status
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

    async def flush(self) -> None:
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
            self._ctx = JobContext(self.ref.key, self.ref.name, self.ref.uid, spec, store, url, path)
        else:
            self._ctx = dataclasses.replace(self._ctx, spec=spec)
        return self._ctx

    # -- the loop --------------------------------------------------------------------------------
    async def run(self) -> Decision:
        """Drive until the job is finished; returns the last decision (``finished`` or ``expire``)."""
        self.rt.phases.set(self.ref.key, self.status.phase)
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
