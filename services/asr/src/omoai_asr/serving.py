"""The logic behind the routes: the request lifecycle (admission before the body is read, the
deadline, client disconnects; :mod:`omoai_http.lifecycle`), fetching and decoding the audio
(ffmpeg, killed when its request is cancelled), batching, and rendering the transcript.

Routes stay thin: they hand a handler to :meth:`AsrServing.run`, which parses the body it is
given into options and a source and calls the ``transcribe_*`` methods.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from fastapi import Request
from omoai_audio import decode_audio_async
from omoai_core.errors import AudioTooShortError, OmoaiError, UnavailableError
from omoai_core.schemas import Transcript
from omoai_http.admission import Admission
from omoai_http.lifecycle import Body, BodyLimits, ClientClosedError, RequestLifecycle

from omoai_asr.batcher import Batcher
from omoai_asr.fetch import FetchPolicy, Resolver, open_url, system_resolver
from omoai_asr.geometry import DecodeOptions
from omoai_asr.metrics import AsrMetrics, outcome_of
from omoai_asr.settings import AsrSettings

if TYPE_CHECKING:
    from omoai_asr.runtime import AsrRuntime

log = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["AsrServing", "ClientClosedError"]


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

    # -- the request lifecycle ---------------------------------------------------------------------

    async def run(self, request: Request, handler: Callable[[Body], Awaitable[T]]) -> T:
        """``handler(body)`` admitted before its body is read, under the request timeout, cancelled
        if the client disconnects. Every outcome is counted once in ``omoai_asr_requests_total``."""
        started = time.perf_counter()
        outcome = "error"
        try:
            if not self.ready:
                raise UnavailableError("the model is still loading; retry shortly")
            result = await self.lifecycle.run(request, handler)
            outcome = "success"
            return result
        except OmoaiError as e:
            outcome = "cancelled" if isinstance(e, ClientClosedError) else outcome_of(e.code, e.http_status)
            raise
        finally:
            self.metrics.outcome(outcome)  # type: ignore[arg-type]
            self.metrics.request_duration.observe(time.perf_counter() - started)

    # -- transcription -----------------------------------------------------------------------------

    async def transcribe_path(self, path: Path, options: DecodeOptions) -> Transcript:
        return await self._transcribe(path, options)

    async def transcribe_url(self, url: str, options: DecodeOptions) -> Transcript:
        async with open_url(url, self.fetch_policy, resolver=self.resolver) as path:
            return await self._transcribe(path, options)

    async def _transcribe(self, source: Path, options: DecodeOptions) -> Transcript:
        audio = await decode_audio_async(
            source, max_duration_s=self.settings.max_audio_duration_s, timeout_s=self.settings.decode_timeout_s
        )
        if audio.duration < self.settings.min_audio_duration_s:
            raise AudioTooShortError(
                f"the audio is {audio.duration * 1000:.0f} ms long; the shortest accepted is "
                f"{self.settings.min_audio_duration_s * 1000:.0f} ms",
                details={"duration_s": audio.duration, "min_duration_s": self.settings.min_audio_duration_s},
            )
        self.metrics.request_audio.observe(audio.duration)
        transcript = await self.batcher.submit(audio.samples, options)
        return transcript.model_copy(update={"model": self.model_name})
