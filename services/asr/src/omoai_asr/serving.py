"""The logic behind the routes: the request lifecycle (admission before the body is read, the
deadline, client disconnects; :mod:`omoai_http.lifecycle`), fetching and decoding the audio
(ffmpeg, killed when its request is cancelled), batching, and rendering the transcript.

Routes stay thin: they hand a handler to :meth:`AsrServing.run`, which parses the body it is
given into options and a source and calls the ``transcribe_*`` methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from fastapi import Request
from omoai_audio import Audio, decode_audio_async
from omoai_core.errors import AudioTooShortError, OmoaiError, UnavailableError
from omoai_core.schemas import Transcript
from omoai_http.admission import Admission
from omoai_http.lifecycle import Body, BodyLimits, ClientClosedError, RequestLifecycle

from omoai_asr.batcher import Batcher
from omoai_asr.diarization.alignment import assign_speakers
from omoai_asr.diarization.types import Diarization, DiarizationBackend, DiarizationOptions
from omoai_asr.fetch import FetchPolicy, Resolver, open_url, system_resolver
from omoai_asr.geometry import SAMPLE_RATE, DecodeOptions
from omoai_asr.live import Committed, Failed, Final, LiveScheduler, LiveStream
from omoai_asr.metrics import AsrMetrics, DiarizationMetrics, Outcome, outcome_of
from omoai_asr.settings import AsrSettings
from omoai_asr.sse import EventStream

if TYPE_CHECKING:
    from omoai_asr.runtime import AsrRuntime

log = logging.getLogger(__name__)

T = TypeVar("T")

#: One event of a streamed file transcription: ("delta", str), ("progress", dict), ("segment", Segment),
#: ("done", Transcript).
FileStreamEvent = tuple[str, Any]

__all__ = ["AsrServing", "ClientClosedError"]


class DiarizationUnavailableError(OmoaiError):
    """Diarization was asked for but this server runs without a diarization backend."""

    code = "diarization_unavailable"
    http_status = 501


class AsrServing:
    def __init__(
        self,
        settings: AsrSettings,
        *,
        admission: Admission,
        metrics: AsrMetrics,
        model_name: str,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.settings = settings
        self.runtime: AsrRuntime | None = None  # attached once the engine is loaded and warm
        self.admission = admission
        self.lifecycle = RequestLifecycle(
            admission, deadline_s=settings.request_timeout_s, limits=BodyLimits.from_settings(settings)
        )
        self.metrics = metrics
        self.model_name = model_name
        self.fetch_policy = FetchPolicy.from_settings(settings)
        self.resolver = resolver
        self.diarization_metrics = DiarizationMetrics(metrics.registry)
        self._diarize_slots = asyncio.Semaphore(settings.diarization_max_concurrency)

    # -- the engine --------------------------------------------------------------------------------

    def attach(self, runtime: AsrRuntime) -> None:
        self.runtime = runtime

    def detach(self) -> None:
        self.runtime = None

    @property
    def ready(self) -> bool:
        return self.runtime is not None

    @property
    def batcher(self) -> Batcher:
        if self.runtime is None:
            raise UnavailableError("the model is still loading; retry shortly")
        return self.runtime.batcher

    @property
    def live(self) -> LiveScheduler:
        """The live-stream scheduler (the realtime WebSocket's decoder); 503 while loading."""
        if self.runtime is None:
            raise UnavailableError("the model is still loading; retry shortly")
        if self.runtime.live is None:
            raise UnavailableError("this server's engine cannot decode live streams")
        return self.runtime.live

    @property
    def diarizer(self) -> DiarizationBackend | None:
        """The diarization backend the runtime loaded (None: diarization off or not loaded)."""
        return None if self.runtime is None else self.runtime.diarizer

    # -- the request lifecycle ---------------------------------------------------------------------

    async def run(self, request: Request, handler: Callable[[Body], Awaitable[T]]) -> T:
        """``handler(body)`` admitted before its body is read, under the request timeout, cancelled
        if the client disconnects. Every outcome is counted once in ``omoai_asr_requests_total``."""
        started = time.perf_counter()

        def record(outcome: Outcome) -> None:
            self.metrics.outcome(outcome)
            self.metrics.request_duration.observe(time.perf_counter() - started)

        outcome: Outcome = "error"
        streamed = False
        try:
            if not self.ready:
                raise UnavailableError("the model is still loading; retry shortly")
            result = await self.lifecycle.run(request, handler)
            if isinstance(result, EventStream):
                # A streamed answer's outcome and duration are known when its stream ends.
                result.on_end = record
                streamed = True
            outcome = "success"
            return result
        except OmoaiError as e:
            outcome = "cancelled" if isinstance(e, ClientClosedError) else outcome_of(e.code, e.http_status)
            raise
        finally:
            if not streamed:
                record(outcome)

    # -- transcription -----------------------------------------------------------------------------

    async def transcribe_path(
        self, path: Path, options: DecodeOptions, diarization: DiarizationOptions | None = None
    ) -> Transcript:
        return await self._transcribe(path, options, diarization)

    async def transcribe_url(
        self, url: str, options: DecodeOptions, diarization: DiarizationOptions | None = None
    ) -> Transcript:
        async with open_url(url, self.fetch_policy, resolver=self.resolver) as path:
            return await self._transcribe(path, options, diarization)

    async def _transcribe(
        self, source: Path, options: DecodeOptions, diarization: DiarizationOptions | None = None
    ) -> Transcript:
        if diarization is not None:
            self.require_diarizer()
        audio = await self._decoded(source)
        self.metrics.request_audio.observe(audio.duration)
        if diarization is not None:
            return await self._transcribe_diarized(audio.samples, options, diarization)
        transcript = await self.batcher.submit(audio.samples, options)
        return transcript.model_copy(update={"model": self.model_name})

    async def _decoded(self, source: Path) -> Audio:
        """The file's samples, within the duration limits."""
        audio = await decode_audio_async(
            source, max_duration_s=self.settings.max_audio_duration_s, timeout_s=self.settings.decode_timeout_s
        )
        if audio.duration < self.settings.min_audio_duration_s:
            raise AudioTooShortError(
                f"the audio is {audio.duration * 1000:.0f} ms long; the shortest accepted is "
                f"{self.settings.min_audio_duration_s * 1000:.0f} ms",
                details={"duration_s": audio.duration, "min_duration_s": self.settings.min_audio_duration_s},
            )
        return audio

    # -- streamed transcription (server-sent events) ----------------------------------------------

    async def open_file_stream(self, path: Path, options: DecodeOptions) -> AsyncIterator[FileStreamEvent]:
        """Decode ``path`` and open a live stream for it; returns the events of its decode.

        Called inside the request lifecycle, so bad audio and a full replica (``live_max_streams``)
        are ordinary error answers; the returned iterator then feeds the audio (as fast as the
        decoder takes it) and yields ``("delta", text)`` for each piece of committed text,
        ``("progress", {...})`` after each decoded window,
        ``("segment", segment)`` for each segment as soon as it is final and ``("done", transcript)``
        (the batch transcript of the file). Closing the iterator (client hang-up) stops the work
        and frees the stream.
        """
        audio = await self._decoded(path)
        stream = self.live.open(options)
        self.metrics.request_audio.observe(audio.duration)
        return self._file_events(stream, audio.samples)

    async def open_url_stream(self, url: str, options: DecodeOptions) -> AsyncIterator[FileStreamEvent]:
        """:meth:`open_file_stream` of an ``audio_url`` (fetched and decoded before it returns)."""
        async with open_url(url, self.fetch_policy, resolver=self.resolver) as path:
            return await self.open_file_stream(path, options)

    async def _file_events(self, stream: LiveStream, samples: np.ndarray) -> AsyncIterator[FileStreamEvent]:
        total = len(samples) / SAMPLE_RATE
        piece = SAMPLE_RATE * 10

        async def feed() -> None:
            for lo in range(0, len(samples), piece):
                await stream.feed(samples[lo : lo + piece])
            await stream.commit()

        feeder = asyncio.ensure_future(feed())
        try:
            async for event in stream.events():
                if isinstance(event, Committed):
                    if event.text:
                        yield "delta", event.text
                    for segment in event.segments:
                        yield "segment", segment
                    yield (
                        "progress",
                        {"audio_seconds_done": min(event.audio_seconds_done, total), "audio_seconds_total": total},
                    )
                elif isinstance(event, Final):
                    yield "done", event.transcript.model_copy(update={"model": self.model_name})
                    return
                elif isinstance(event, Failed):
                    raise event.error
        finally:
            feeder.cancel()
            with contextlib.suppress(BaseException):
                await feeder
            stream.close()

    # -- speaker diarization -----------------------------------------------------------------------

    def require_diarizer(self) -> DiarizationBackend:
        if self.diarizer is None:
            raise DiarizationUnavailableError(
                "speaker diarization is not available on this server (OMOAI_DIARIZATION_BACKEND=off, or the "
                "default backend's weights are not installed: see docs/asr-service.md)"
            )
        return self.diarizer

    async def diarize(self, samples: np.ndarray, options: DiarizationOptions) -> Diarization:
        """Who spoke when, in a worker thread, at most ``diarization_max_concurrency`` at once."""
        backend = self.require_diarizer()
        async with self._diarize_slots:
            started = time.perf_counter()
            result = await asyncio.to_thread(backend.diarize, samples, options)
            self.diarization_metrics.observe(
                backend.name, time.perf_counter() - started, len(samples) / 16000, len(result.speakers)
            )
        return result

    async def _transcribe_diarized(
        self, samples: np.ndarray, options: DecodeOptions, diarization: DiarizationOptions
    ) -> Transcript:
        """ASR and diarization side by side; every word then gets the speaker of its turn. Words are
        needed to split segments at speaker changes, so they are decoded even when not returned."""
        asr = asyncio.ensure_future(self.batcher.submit(samples, dataclasses.replace(options, word_timestamps=True)))
        try:
            turns = await self.diarize(samples, diarization)
            transcript = await asr
        finally:
            if not asr.done():
                asr.cancel()
        aligned = assign_speakers(transcript, turns)
        if not options.word_timestamps:
            aligned = aligned.model_copy(
                update={"segments": [s.model_copy(update={"words": []}) for s in aligned.segments]}
            )
        return aligned.model_copy(update={"model": self.model_name})
