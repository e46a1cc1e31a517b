"""Live streams: many audio streams decoded incrementally, their ready windows batched together.

This is the seam the realtime WebSocket (and any other live transport) sits on. A transport opens
a :class:`LiveStream` with :meth:`LiveScheduler.open`, feeds it 16 kHz mono int16 PCM in pieces
of any size (:meth:`LiveStream.feed`) and reads :data:`LiveEvent` objects from
:meth:`LiveStream.events` (or :meth:`LiveStream.next_event`):

- :class:`Committed`: text that will never change (append-only deltas of the current item), and
  the segments that became final, with words, in the **stream's** audio clock (seconds since the
  stream opened, cleared audio included);
- :class:`Partial` (only when the stream was opened with ``partials=True``): the revisable
  hypothesis of the not yet committed tail of the item, decoded without waiting for its right
  context; each one replaces the previous; never part of committed text;
- :class:`Final`: after :meth:`LiveStream.commit` (preceded by the :class:`Committed` event of
  the item's last text), the item's whole transcript, which is exactly
  the batch transcript of the item's audio under the same decode options (times relative to the
  item's start, ``item_start`` gives that start in the stream clock); the stream then goes on
  with a new, empty item;
- :class:`Failed`: the stream failed (engine error); the stream is closed.

An *item* is the audio fed since the stream opened or since the last commit/clear. Text is
committed as soon as the decode options allow: a window of ``keep`` encoder frames is decoded once
its right context (``right_context_frames``) of audio has arrived (see ``docs/asr-engine.md``).

Scheduling: one task gathers the windows that streams have ready and decodes them together in
masked batches (one batch per set of identical decode options) on the engine's single worker
thread, the same thread as file requests (the :class:`~omoai_asr.batcher.Batcher`'s), so live
streams and files share the device fairly in FIFO order. Limits: at most ``max_streams`` open
streams (:meth:`LiveScheduler.open` raises :class:`~omoai_core.errors.OverloadedError`);
backpressure when a stream's audio not yet decoded exceeds ``max_buffered_s`` while the decoder
has a window of it ready (audio that only completes a window is always taken):
:meth:`LiveStream.feed` waits until the decoder has caught up (a transport that must not block
uses :meth:`LiveStream.feed_nowait`, which raises :class:`StreamBackpressureError` instead), so a
client that sends faster than the replica decodes holds at most ``max_buffered_s`` (or one window
and its right context, if that is longer) plus one piece of audio in memory. Events are queued without bound only in number of windows decoded (each event
is small); a transport whose client never reads should close the stream.
:meth:`LiveStream.close` (or cancelling) frees the decoder state at once.

API stability: the names and signatures here are what ``/v1/realtime`` codes against; changes
stay backwards compatible and are noted in this docstring. Changes so far: :meth:`LiveStream.events`
ends by itself when the stream is closed; ``shift_segment`` is public (it was ``_shift``);
:class:`Committed` may carry empty text (progress: one per decoded window).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from omoai_core.errors import InvalidInputError, OmoaiError, OverloadedError, UnavailableError
from omoai_core.schemas import Segment, Transcript

from omoai_asr.geometry import SAMPLE_RATE, DecodeOptions
from omoai_asr.metrics import AsrMetrics

log = logging.getLogger(__name__)

__all__ = [
    "Committed",
    "Failed",
    "Final",
    "LiveEvent",
    "LiveScheduler",
    "LiveStream",
    "Partial",
    "StreamBackpressureError",
    "StreamClosedError",
    "StreamingEngine",
    "shift_segment",
]


# -- events ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Committed:
    """Newly committed text of the current item (append it; it never changes)."""

    text: str  # the delta: the item's committed text grows by exactly this string (may be empty: progress)
    segments: tuple[Segment, ...]  # segments that became final, times in the stream's audio clock
    audio_seconds_done: float  # stream clock: audio decoded and committed up to here


@dataclass(frozen=True)
class Partial:
    """The revisable hypothesis of the item's not yet committed tail (replaces the previous one)."""

    text: str  # the tail only; committed text + " " + this reads as the current best guess
    audio_seconds: float  # stream clock: audio the hypothesis covers up to


@dataclass(frozen=True)
class Final:
    """The committed item's whole transcript: exactly the batch transcript of its audio."""

    transcript: Transcript  # times relative to the item's first sample (as the batch endpoint's)
    item_start: float  # the item's first sample in the stream's audio clock (seconds)


@dataclass(frozen=True)
class Failed:
    """The stream failed and is closed."""

    error: OmoaiError


LiveEvent = Committed | Partial | Final | Failed


class StreamClosedError(InvalidInputError):
    """The stream is closed (by the client, the server or a failure)."""

    code = "stream_closed"
    http_status = 409


class StreamBackpressureError(OverloadedError):
    """The stream holds more audio not yet decoded than the bound allows."""

    code = "stream_backpressure"


# -- the engine seam ---------------------------------------------------------------------------------


class EngineStream(Protocol):
    """The engine's per-stream decoder state (``omoai_asr.engine.streaming.TranscriptStream``)."""

    options: DecodeOptions

    def push(self, samples: np.ndarray) -> None: ...

    @property
    def has_ready_window(self) -> bool: ...

    @property
    def pending_samples(self) -> int: ...


class StreamUpdate(Protocol):
    """What one decode step produced for one stream (``omoai_asr.engine.streaming.StreamUpdate``)."""

    @property
    def text_delta(self) -> str: ...  # appended to the item's committed text

    @property
    def segments(self) -> tuple[Segment, ...]: ...  # newly final segments, item clock

    @property
    def samples_done(self) -> int: ...  # item samples whose text is committed

    @property
    def partial(self) -> str | None: ...  # the tail's hypothesis, when asked for

    @property
    def partial_samples(self) -> int: ...  # item samples the partial covers

    @property
    def final(self) -> Transcript | None: ...  # the item's transcript, when finished


@runtime_checkable
class StreamingEngine(Protocol):
    """What the scheduler needs from the engine (``ChunkFormerEngine`` implements it)."""

    def open_stream(self, options: DecodeOptions) -> EngineStream: ...

    def step_streams(
        self, streams: Sequence[EngineStream], *, finish: Sequence[bool], partial: Sequence[bool]
    ) -> Sequence[StreamUpdate]:
        """Decode every ready window of ``streams`` (masked batches across streams), finish those
        flagged (all that is left, as final) and decode a partial of those flagged."""
        ...


# -- streams ---------------------------------------------------------------------------------------


_ids = itertools.count(1)


@dataclass(eq=False)
class LiveStream:
    """One live stream: feed audio, read events, commit items, close. Built by :meth:`LiveScheduler.open`."""

    scheduler: LiveScheduler
    options: DecodeOptions
    partials: bool
    id: str = field(default_factory=lambda: f"live-{next(_ids)}")
    _engine_stream: EngineStream | None = None
    _events: asyncio.Queue[LiveEvent | None] = field(default_factory=asyncio.Queue)  # None: closed
    _drained: asyncio.Event = field(default_factory=asyncio.Event)
    _commits: list[asyncio.Future[Transcript]] = field(default_factory=list)
    _closed: bool = False
    _item_start_samples: int = 0  # stream clock of the current item's first sample
    _fed_samples: int = 0  # samples of the stream so far (stream clock)
    _samples_done: int = 0  # item samples committed (as last reported)
    _partial_due: bool = False  # audio arrived since the last partial
    _partial_at: float = float("-inf")  # loop time of the last partial

    # -- the transport's side ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def audio_seconds(self) -> float:
        """Audio fed so far (the stream clock)."""
        return self._fed_samples / SAMPLE_RATE

    @property
    def buffered_seconds(self) -> float:
        """Audio fed but not yet decoded (what backpressure bounds)."""
        return 0.0 if self._engine_stream is None else self._engine_stream.pending_samples / SAMPLE_RATE

    def feed_nowait(self, pcm: np.ndarray) -> None:
        """Append 16 kHz mono int16 samples; raises :class:`StreamBackpressureError` past the bound."""
        self._check_open()
        samples = _as_pcm(pcm)
        if self._behind(len(samples)):
            raise StreamBackpressureError(
                f"the stream holds {self.buffered_seconds:.1f} s of audio not yet decoded (at most "
                f"{self.scheduler.max_buffered_s:.1f} s): send slower",
                details={"buffered_s": self.buffered_seconds, "max_buffered_s": self.scheduler.max_buffered_s},
            )
        self._append(samples)

    async def feed(self, pcm: np.ndarray) -> None:
        """Append samples, first waiting while the stream's undecoded audio is over the bound."""
        self._check_open()
        samples = _as_pcm(pcm)
        while self._behind(len(samples)):
            self._drained.clear()
            await self._drained.wait()
            self._check_open()
        self._append(samples)

    async def commit(self) -> Transcript:
        """End the current item: decode what is left as final; returns (and emits as :class:`Final`)
        its transcript, equal to the batch transcript of the item's audio. A new item starts."""
        self._check_open()
        future: asyncio.Future[Transcript] = asyncio.get_running_loop().create_future()
        self._commits.append(future)
        self.scheduler._wake.set()
        return await future

    def clear(self) -> None:
        """Drop the current item's audio and decoder state (nothing is emitted); a new item starts."""
        self._check_open()
        self._engine_stream = self.scheduler.engine.open_stream(self.options)
        self._item_start_samples = self._fed_samples
        self._drained.set()

    async def next_event(self) -> LiveEvent:
        """The next event; raises :class:`StreamClosedError` once the stream is closed and drained."""
        event = await self._events.get()
        if event is None:
            self._events.put_nowait(None)  # every later call sees the end too
            raise StreamClosedError("the stream is closed")
        return event

    async def events(self) -> AsyncIterator[LiveEvent]:
        """Events until the stream is closed (a :class:`Failed` event ends the iteration too)."""
        while True:
            event = await self._events.get()
            if event is None:
                self._events.put_nowait(None)
                return
            yield event
            if isinstance(event, Failed):
                return

    def close(self) -> None:
        """Free the decoder state; pending commits fail with :class:`StreamClosedError`."""
        if self._closed:
            return
        self._closed = True
        self._engine_stream = None
        for future in self._commits:
            if not future.done():
                future.set_exception(StreamClosedError("the stream was closed"))
        self._commits.clear()
        self._drained.set()
        self._events.put_nowait(None)
        self.scheduler._forget(self)

    # -- internals -----------------------------------------------------------------------------------

    def _behind(self, more: int) -> bool:
        """Whether ``more`` samples would put the stream over its bound of audio not yet decoded.

        Only audio the decoder could already work on counts against the bound: while no window is
        ready the stream still needs audio to complete one (a window and its right context, see
        ``docs/asr-engine.md``), so that much is always accepted.
        """
        stream = self._engine_stream
        if stream is None or not stream.has_ready_window:
            return False
        return self.buffered_seconds + more / SAMPLE_RATE > self.scheduler.max_buffered_s

    def _check_open(self) -> None:
        if self._closed:
            raise StreamClosedError("the stream is closed")

    def _append(self, samples: np.ndarray) -> None:
        if self._engine_stream is None:
            self._engine_stream = self.scheduler.engine.open_stream(self.options)
        self._engine_stream.push(samples)
        self._fed_samples += len(samples)
        self._partial_due = self.partials
        self.scheduler._wake.set()

    def _wants_step(self) -> bool:
        if self._closed:
            return False
        if self._commits:
            return True
        stream = self._engine_stream
        return stream is not None and (stream.has_ready_window or self._partial_ready())

    def _partial_ready(self) -> bool:
        if not self._partial_due:
            return False
        return asyncio.get_running_loop().time() - self._partial_at >= self.scheduler.partial_interval_s

    def _deliver(self, update: StreamUpdate, finished: bool) -> int:
        """Queue the events of ``update``; returns the item samples it decoded for good (committed
        now, or the whole rest of the item when it finished): what the audio-seconds metric counts."""
        clock = self._item_start_samples / SAMPLE_RATE
        before = self._samples_done
        decoded = max(0, update.samples_done - before)
        if update.text_delta or update.segments or update.samples_done > self._samples_done:
            self._samples_done = update.samples_done
            self._events.put_nowait(
                Committed(
                    update.text_delta,
                    tuple(shift_segment(s, clock) for s in update.segments),
                    clock + update.samples_done / SAMPLE_RATE,
                )
            )
        if update.partial is not None and not finished:
            self._events.put_nowait(Partial(update.partial, clock + update.partial_samples / SAMPLE_RATE))
        if finished:
            assert update.final is not None
            self._events.put_nowait(Final(update.final, clock))
            decoded = max(0, self._fed_samples - self._item_start_samples - before)
            future = self._commits.pop(0)
            if not future.done():
                future.set_result(update.final)
            self._engine_stream = None
            self._item_start_samples = self._fed_samples
            self._samples_done = 0
        self._drained.set()
        return decoded

    def _fail(self, error: OmoaiError) -> None:
        self._events.put_nowait(Failed(error))
        self.close()


def _as_pcm(pcm: np.ndarray) -> np.ndarray:
    arr = np.asarray(pcm)
    if arr.dtype != np.int16 or arr.ndim != 1:
        raise InvalidInputError(f"live audio must be mono int16 samples at 16 kHz, got {arr.dtype} {arr.shape}")
    return arr


def shift_segment(segment: Segment, seconds: float) -> Segment:
    """A segment (and its words) moved by ``seconds`` (item clock -> stream clock)."""
    if seconds == 0:
        return segment
    return segment.model_copy(
        update={
            "start": round(segment.start + seconds, 3),
            "end": round(segment.end + seconds, 3),
            "words": [
                w.model_copy(update={"start": round(w.start + seconds, 3), "end": round(w.end + seconds, 3)})
                for w in segment.words
            ],
        }
    )


# -- the scheduler ---------------------------------------------------------------------------------


class LiveScheduler:
    """Owns the open streams and decodes their ready windows together on the engine thread.

    ``run_in_engine_thread`` is the batcher's (:meth:`Batcher.run_in_engine_thread`): live work
    and file batches take turns on one worker thread and one device. With ``metrics``, each step is
    recorded as the batcher records a batch (:meth:`AsrMetrics.observe_engine_call`): its engine
    time, the streams it decoded together and the seconds of audio it decoded for good.
    """

    def __init__(
        self,
        engine: StreamingEngine,
        run_in_engine_thread: Callable[[Callable[[], object]], asyncio.Future[object]],
        *,
        max_streams: int,
        max_buffered_s: float,
        partial_interval_s: float = 0.5,
        metrics: AsrMetrics | None = None,
    ) -> None:
        if max_streams < 1:
            raise ValueError("max_streams must be >= 1")
        if max_buffered_s <= 0:
            raise ValueError("max_buffered_s must be > 0")
        self.engine = engine
        self.run_in_engine_thread = run_in_engine_thread
        self.max_streams = max_streams
        self.max_buffered_s = max_buffered_s
        self.partial_interval_s = partial_interval_s
        self.metrics = metrics
        self._streams: dict[str, LiveStream] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.steps_run = 0  # engine calls (each decodes one window of every stream due, in one batch)

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="asr-live")

    async def stop(self) -> None:
        """Stop scheduling; open streams get :class:`Failed` (unavailable, retry) and close."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for stream in list(self._streams.values()):
            stream._fail(UnavailableError("the server is shutting down; reconnect"))

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def open(self, options: DecodeOptions, *, partials: bool = False) -> LiveStream:
        """A new stream; raises :class:`OverloadedError` when ``max_streams`` are open."""
        if self._task is None or self._task.done():
            raise UnavailableError("the live transcription worker is not running")
        if len(self._streams) >= self.max_streams:
            raise OverloadedError(
                f"this replica already serves {self.max_streams} live streams; retry later or on another replica",
                details={"max_streams": self.max_streams},
            )
        stream = LiveStream(self, options, partials)
        self._streams[stream.id] = stream
        return stream

    def _forget(self, stream: LiveStream) -> None:
        self._streams.pop(stream.id, None)
        self._wake.set()

    # -- the loop ------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            delay = self._next_partial_in()
            if delay is None:
                await self._wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            due = [s for s in self._streams.values() if s._wants_step()]
            if not due:
                continue
            groups: dict[DecodeOptions, list[LiveStream]] = {}
            for s in due:
                groups.setdefault(s.options, []).append(s)
            for group in groups.values():
                await self._step(group)
            if any(s._wants_step() for s in self._streams.values()):
                self._wake.set()

    def _next_partial_in(self) -> float | None:
        """Seconds until the next partial falls due (None: no partial waits)."""
        now = asyncio.get_running_loop().time()
        waits = [
            max(0.0, s._partial_at + self.partial_interval_s - now) for s in self._streams.values() if s._partial_due
        ]
        return min(waits) if waits else None

    async def _step(self, group: list[LiveStream]) -> None:
        jobs: list[tuple[LiveStream, EngineStream, bool]] = []
        for s in group:
            if s._closed:
                continue
            if s._engine_stream is None:  # a commit of an empty item
                s._engine_stream = self.engine.open_stream(s.options)
            jobs.append((s, s._engine_stream, bool(s._commits)))
        if not jobs:
            return
        partial = [s._partial_ready() and not finish for s, _, finish in jobs]
        now = asyncio.get_running_loop().time()
        for (s, _, _), wanted in zip(jobs, partial, strict=True):
            if wanted:
                s._partial_due = False
                s._partial_at = now
        streams = [e for _, e, _ in jobs]
        finish = [f for _, _, f in jobs]
        started = time.perf_counter()
        try:
            updates = await self.run_in_engine_thread(
                lambda: self.engine.step_streams(streams, finish=finish, partial=partial)
            )
        except Exception as e:
            log.exception("the engine failed on %d live streams", len(jobs))
            error = e if isinstance(e, OmoaiError) else UnavailableError("the live decoder failed; reconnect")
            for s, _, _ in jobs:
                s._fail(error)
            return
        elapsed = time.perf_counter() - started
        self.steps_run += 1
        assert isinstance(updates, list) and len(updates) == len(jobs)
        decoded = 0
        for (s, engine_stream, finished), update in zip(jobs, updates, strict=True):
            if s._closed or s._engine_stream is not engine_stream:
                continue  # closed or cleared while the step ran: its results are dropped
            decoded += s._deliver(update, finished and update.final is not None)
        if self.metrics is not None:
            self.metrics.observe_engine_call(elapsed, len(jobs), decoded / SAMPLE_RATE)
