"""The logic behind the routes: admission, timeouts and client disconnects, fetching and decoding
the audio (ffmpeg in a worker thread), batching, and rendering the transcript.

Routes stay thin: they parse the request into options and a source and call :class:`AsrServing`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from fastapi import Request
from omoai_audio import decode_audio
from omoai_core.errors import AudioTooShortError, OmoaiError, TimeoutError_, UnavailableError
from omoai_core.schemas import Transcript
from omoai_http.admission import Admission

from omoai_asr.batcher import Batcher
from omoai_asr.diarization.alignment import assign_speakers
from omoai_asr.diarization.types import Diarization, DiarizationBackend, DiarizationOptions
from omoai_asr.engine.options import DecodeOptions
from omoai_asr.fetch import FetchPolicy, Resolver, open_url, system_resolver
from omoai_asr.metrics import AsrMetrics, DiarizationMetrics, outcome_of
from omoai_asr.settings import AsrSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How often a running request checks whether its client is still connected.
DISCONNECT_POLL_S = 0.25


class ClientClosedError(OmoaiError):
    """The client went away before the answer (nginx's 499); nobody receives this response."""

    code = "client_closed_request"
    http_status = 499


class DiarizationUnavailableError(OmoaiError):
    """Diarization was asked for but this server runs without a diarization backend."""

    code = "diarization_unavailable"
    http_status = 501


class AsrServing:
    def __init__(
        self,
        settings: AsrSettings,
        *,
        batcher: Batcher,
        admission: Admission,
        metrics: AsrMetrics,
        model_name: str,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.settings = settings
        self.batcher = batcher
        self.admission = admission
        self.metrics = metrics
        self.model_name = model_name
        self.fetch_policy = FetchPolicy.from_settings(settings)
        self.resolver = resolver
        self.ready = False
        # Speaker diarization: the backend is set by the app once loaded (None = not available).
        self.diarizer: DiarizationBackend | None = None
        self.diarization_metrics = DiarizationMetrics(metrics.registry)
        self._diarize_slots = asyncio.Semaphore(settings.diarization_max_concurrency)

    # -- the request lifecycle ---------------------------------------------------------------------

    async def run(self, request: Request, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` admitted, under the request timeout, cancelled if the client disconnects.

        Every outcome is counted once in ``omoai_asr_requests_total{outcome}``.
        """
        started = time.perf_counter()
        outcome = "error"
        try:
            if not self.ready:
                raise UnavailableError("the model is still loading; retry shortly")
            result = await self._guarded(request, work)
            outcome = "success"
            return result
        except OmoaiError as e:
            outcome = "cancelled" if isinstance(e, ClientClosedError) else outcome_of(e.code, e.http_status)
            raise
        finally:
            self.metrics.outcome(outcome)  # type: ignore[arg-type]
            self.metrics.request_duration.observe(time.perf_counter() - started)

    async def _guarded(self, request: Request, work: Callable[[], Awaitable[T]]) -> T:
        async def admitted() -> T:
            async with self.admission.slot():
                return await work()

        task = asyncio.ensure_future(admitted())
        watcher = asyncio.ensure_future(_wait_disconnect(request))
        try:
            done, _ = await asyncio.wait(
                {task, watcher}, timeout=self.settings.request_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if task in done:
                return task.result()
            if watcher in done and watcher.result():
                log.info("client disconnected; dropping its transcription")
                raise ClientClosedError("the client closed the connection")
            raise TimeoutError_(
                f"the request took longer than {self.settings.request_timeout_s:.0f} s and was stopped",
                details={"request_timeout_s": self.settings.request_timeout_s},
            )
        finally:
            for t in (task, watcher):
                if not t.done():
                    t.cancel()
            await asyncio.gather(task, watcher, return_exceptions=True)

    # -- transcription -----------------------------------------------------------------------------

    async def transcribe_bytes(
        self, data: bytes, options: DecodeOptions, diarization: DiarizationOptions | None = None
    ) -> Transcript:
        return await self._transcribe(data, options, diarization)

    async def transcribe_url(
        self, url: str, options: DecodeOptions, diarization: DiarizationOptions | None = None
    ) -> Transcript:
        async with open_url(url, self.fetch_policy, resolver=self.resolver) as path:
            return await self._transcribe(path, options, diarization)

    async def _transcribe(
        self, source: bytes | Path, options: DecodeOptions, diarization: DiarizationOptions | None = None
    ) -> Transcript:
        if diarization is not None:
            self.require_diarizer()
        audio = await asyncio.to_thread(decode_audio, source, max_duration_s=self.settings.max_audio_duration_s)
        if audio.duration < self.settings.min_audio_duration_s:
            raise AudioTooShortError(
                f"the audio is {audio.duration * 1000:.0f} ms long; the shortest accepted is "
                f"{self.settings.min_audio_duration_s * 1000:.0f} ms",
                details={"duration_s": audio.duration, "min_duration_s": self.settings.min_audio_duration_s},
            )
        self.metrics.request_audio.observe(audio.duration)
        if diarization is not None:
            return await self._transcribe_diarized(audio.samples, options, diarization)
        transcript = await self.batcher.submit(audio.samples, options)
        return transcript.model_copy(update={"model": self.model_name})

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


async def _wait_disconnect(request: Request) -> bool:
    """True once the client has disconnected (polls: the body has already been read)."""
    while True:
        await asyncio.sleep(DISCONNECT_POLL_S)
        if await request.is_disconnected():
            return True
