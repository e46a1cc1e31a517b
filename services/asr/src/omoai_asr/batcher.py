"""Dynamic batching: requests that arrive together are decoded together in masked batches.

The first request of a batch waits up to ``batch_window_s`` for others with the same
:class:`DecodeOptions` (up to ``max_batch_size``); the batch then runs in the engine's single
worker thread while the next one gathers, so throughput grows with concurrency instead of
serialising behind a lock. A recording longer than one long-form window is decoded on its own
with :meth:`Engine.transcribe`, which checks between windows whether anyone still waits for it.

A request whose caller has gone (client disconnected, request timed out) before its batch starts
is dropped from the queue; a long recording in progress stops at its next window. A batch that
runs out of GPU memory clears the cache (reason ``oom_recovery``) and is retried one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from omoai_core.errors import UnavailableError
from omoai_core.schemas import Transcript

from omoai_asr.geometry import SAMPLE_RATE, DecodeOptions, fits_one_window
from omoai_asr.metrics import AsrMetrics

log = logging.getLogger(__name__)

__all__ = ["Batcher", "Engine", "fits_one_window"]


class Engine(Protocol):
    """The seam between the service and the ASR engine (``ChunkFormerEngine`` implements it)."""

    name: str

    def transcribe(
        self, samples: np.ndarray, options: DecodeOptions, progress: Callable[[float], None] | None = None
    ) -> Transcript: ...

    def transcribe_batch(self, batch: Sequence[np.ndarray], options: DecodeOptions) -> list[Transcript]: ...


class _Abandoned(Exception):
    """Raised from the progress callback when nobody waits for a long recording any more."""


@dataclass(eq=False)
class _Item:
    samples: np.ndarray
    options: DecodeOptions
    future: asyncio.Future[Transcript]
    abandoned: threading.Event = field(default_factory=threading.Event)

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def _is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


class Batcher:
    def __init__(
        self,
        engine: Engine,
        *,
        max_batch_size: int,
        batch_window_s: float,
        metrics: AsrMetrics | None = None,
        on_oom: Callable[[], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.batch_window_s = batch_window_s
        self.metrics = metrics
        self.on_oom = on_oom
        self._queue: deque[_Item] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # One worker: the engine owns one device and is not meant to run two forward passes at once.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr-engine")
        self.batches_run = 0
        self.items_dropped = 0

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="asr-batcher")

    async def stop(self) -> None:
        """Stop batching; requests still queued fail with a retryable 503."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(UnavailableError("the server is shutting down; retry"))
        self._set_pending()
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def run_in_engine_thread(self, fn: Callable[[], object]) -> asyncio.Future[object]:
        """Run ``fn`` on the engine's worker thread (model warm-up uses this)."""
        return asyncio.get_running_loop().run_in_executor(self._executor, fn)

    # -- submitting --------------------------------------------------------------------------------

    async def submit(self, samples: np.ndarray, options: DecodeOptions) -> Transcript:
        """The transcript of ``samples``; cancelling the caller drops the work if it has not started."""
        if self._task is None or self._task.done():
            raise UnavailableError("the transcription worker is not running")
        future: asyncio.Future[Transcript] = asyncio.get_running_loop().create_future()
        item = _Item(samples, options, future)
        future.add_done_callback(lambda f: item.abandoned.set() if f.cancelled() else None)
        self._queue.append(item)
        self._set_pending()
        self._wake.set()
        return await future

    # -- the loop ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._drop_abandoned()
            if not self._queue:
                continue
            head = self._queue[0]
            if fits_one_window(len(head.samples), head.options):
                await self._gather(head)
            batch = self._take(head)
            if batch:
                await self._compute(batch)
            if self._queue:
                self._wake.set()

    async def _gather(self, head: _Item) -> None:
        """Wait up to the batch window for requests that can join ``head``'s batch."""
        deadline = time.monotonic() + self.batch_window_s
        while self._compatible(head) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return

    def _compatible(self, head: _Item) -> int:
        return sum(
            1
            for i in self._queue
            if not i.future.done() and i.options == head.options and fits_one_window(len(i.samples), i.options)
        )

    def _take(self, head: _Item) -> list[_Item]:
        """Remove and return ``head`` and the next compatible requests (FIFO among them)."""
        self._drop_abandoned()
        if not self._queue or self._queue[0] is not head:
            return []
        if not fits_one_window(len(head.samples), head.options):
            self._queue.popleft()
            self._set_pending()
            return [head]
        batch: list[_Item] = []
        rest: deque[_Item] = deque()
        for item in self._queue:
            if (
                len(batch) < self.max_batch_size
                and item.options == head.options
                and fits_one_window(len(item.samples), item.options)
            ):
                batch.append(item)
            else:
                rest.append(item)
        self._queue = rest
        self._set_pending()
        return batch

    def _drop_abandoned(self) -> None:
        kept = deque(i for i in self._queue if not i.future.done())
        dropped = len(self._queue) - len(kept)
        if dropped:
            self.items_dropped += dropped
            if self.metrics:
                self.metrics.dropped.inc(dropped)
            log.debug("dropped %d abandoned requests from the batch queue", dropped)
        self._queue = kept
        self._set_pending()

    def _set_pending(self) -> None:
        if self.metrics:
            self.metrics.batch_pending.set(len(self._queue))

    # -- computing ---------------------------------------------------------------------------------

    async def _compute(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        options = batch[0].options
        started = time.perf_counter()
        try:
            if len(batch) == 1 and not fits_one_window(len(batch[0].samples), options):
                item = batch[0]

                def progress(_: float) -> None:
                    if item.abandoned.is_set():
                        raise _Abandoned

                results = [
                    await loop.run_in_executor(
                        self._executor, lambda: self.engine.transcribe(item.samples, options, progress)
                    )
                ]
            else:
                results = await loop.run_in_executor(
                    self._executor, lambda: self.engine.transcribe_batch([i.samples for i in batch], options)
                )
        except _Abandoned:
            self.items_dropped += 1
            if self.metrics:
                self.metrics.dropped.inc()
            log.info("stopped a long recording whose caller has gone")
            return
        except Exception as e:
            if _is_oom(e):
                await self._recover_from_oom(batch, e)
                return
            log.exception("the engine failed on a batch of %d", len(batch))
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(e)
            return
        elapsed = time.perf_counter() - started
        self.batches_run += 1
        if len(results) != len(batch):  # a broken engine must not hand one caller another's text
            err = RuntimeError(f"engine returned {len(results)} transcripts for {len(batch)} inputs")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(err)
            return
        if self.metrics:
            self.metrics.observe_engine_call(elapsed, len(batch), sum(i.duration for i in batch))
        for item, transcript in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(transcript)

    async def _recover_from_oom(self, batch: list[_Item], exc: BaseException) -> None:
        log.warning("out of memory on a batch of %d: clearing the cache and retrying one by one", len(batch))
        if self.on_oom is not None:
            self.on_oom()
        if len(batch) == 1:
            err = UnavailableError("out of accelerator memory for this input; retry later or send shorter audio")
            err.__cause__ = exc
            if not batch[0].future.done():
                batch[0].future.set_exception(err)
            return
        for item in batch:
            if not item.future.done():
                await self._compute([item])
