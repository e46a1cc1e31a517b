"""The replica's live sessions: the settings every session is built with, the Silero VAD model they
share, their streams on the live scheduler (which admits at most ``OMOAI_LIVE_MAX_STREAMS``), and
the numbers capacity and metrics read.

Live sessions bypass the operator's queue, so ``/v1/capacity`` subtracts the slots they take
(``realtime_sessions_per_slot`` sessions per slot) from what the replica offers the operator.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from omoai_core.errors import ConfigError

from omoai_asr.diarization.vad import SileroVad
from omoai_asr.geometry import DecodeOptions
from omoai_asr.live import LiveStream
from omoai_asr.protocol import TranscriptionOptions
from omoai_asr.realtime import events as ev
from omoai_asr.realtime.endpointing import VadParams
from omoai_asr.realtime.metrics import RealtimeMetrics
from omoai_asr.realtime.session import RealtimeSession, SessionLimits
from omoai_asr.serving import AsrServing
from omoai_asr.settings import AsrSettings

log = logging.getLogger(__name__)


class RealtimeHub:
    def __init__(
        self,
        settings: AsrSettings,
        serving: AsrServing,
        metrics: RealtimeMetrics,
        *,
        vad_loader: Callable[[], SileroVad | None] | None = None,
    ) -> None:
        self.settings = settings
        self.serving = serving
        self.metrics = metrics
        self.sessions: set[RealtimeSession] = set()
        self._vad_loader = vad_loader or (lambda: default_vad(settings))
        self._vad: SileroVad | None = None
        self._vad_loaded = False
        self.limits = SessionLimits(
            max_append_bytes=settings.realtime_max_append_bytes,
            min_item_s=max(settings.min_audio_duration_s, 0.1),
            vad=VadParams(
                threshold=settings.realtime_vad_threshold,
                prefix_padding_ms=settings.realtime_vad_prefix_padding_ms,
                silence_duration_ms=settings.realtime_vad_silence_duration_ms,
                max_item_ms=int(settings.realtime_max_item_s * 1000),
            ),
        )
        #: What a session decodes with unless its client changes it: the server's decode defaults,
        #: with windows short enough for live text (``OMOAI_REALTIME_TOTAL_BATCH_DURATION``).
        self.options = TranscriptionOptions(total_batch_duration=settings.realtime_total_batch_duration).decode_options(
            settings
        )
        metrics.watch_lag(self.max_lag)

    @property
    def vad(self) -> SileroVad | None:
        if not self._vad_loaded:
            self._vad_loaded = True
            try:
                self._vad = self._vad_loader()
            except ConfigError as e:
                log.warning("server_vad is off for realtime sessions: %s", e.message)
        return self._vad

    def slots_taken(self) -> int:
        """Request slots the live sessions take from what this replica offers."""
        return math.ceil(len(self.sessions) / self.settings.realtime_sessions_per_slot)

    def max_lag(self) -> float:
        return max((s.lag_s for s in self.sessions), default=0.0)

    def new_session(self, emit: Callable[[ev.ServerEvent], None]) -> RealtimeSession:
        """A session with its stream open; ``OverloadedError`` at the live scheduler's maximum,
        ``UnavailableError`` while the model loads."""
        live = self.serving.live

        def open_stream(options: DecodeOptions, partials: bool) -> LiveStream:
            return live.open(options, partials=partials)

        session = RealtimeSession(
            open_stream=open_stream,
            options=self.options,
            emit=emit,
            model_name=self.serving.model_name,
            language=self.settings.language,
            limits=self.limits,
            vad_model=self.vad,
            metrics=self.metrics,
        )
        self.sessions.add(session)
        self.metrics.sessions_open.set(len(self.sessions))
        return session

    def remove(self, session: RealtimeSession) -> None:
        self.sessions.discard(session)
        self.metrics.sessions_open.set(len(self.sessions))


def default_vad(settings: AsrSettings) -> SileroVad:
    """The Silero VAD file the diarization backend uses (``OMOAI_DIARIZATION_VAD_PATH`` or the wheel's)."""
    from omoai_asr.diarization.assets import SILERO_VAD, locate

    return SileroVad(locate(SILERO_VAD, settings.diarization_vad_path), threads=1)
