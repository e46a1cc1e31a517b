"""Prometheus metrics of the realtime sessions, on the service's injected registry.

``omoai_asr_realtime_lag_seconds`` is the alerting signal: the most audio any open session has
fed to the decoder and not yet had decoded (seconds behind the session's audio clock). A replica
that keeps up stays under the decode settings' window (a chunk and its right context); one that
cannot decode as fast as its sessions speak grows it up to ``OMOAI_LIVE_MAX_BUFFERED_S``, where
backpressure holds the clients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from omoai_core.metrics import DURATION_BUCKETS
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Why a session was refused or ended by the server (bounded label values).
Refusal = Literal["too_many_sessions", "unauthorized", "bad_intent", "not_ready", "draining"]
REFUSALS: tuple[Refusal, ...] = ("too_many_sessions", "unauthorized", "bad_intent", "not_ready", "draining")
EndReason = Literal["client_closed", "idle_timeout", "session_expired", "shutting_down", "client_too_slow", "error"]
END_REASONS: tuple[EndReason, ...] = (
    "client_closed",
    "idle_timeout",
    "session_expired",
    "shutting_down",
    "client_too_slow",
    "error",
)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 60.0)


class RealtimeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sessions_open = Gauge(
            "omoai_asr_realtime_sessions_open", "Realtime WebSocket sessions open now.", registry=registry
        )
        self.sessions_ended = Counter(
            "omoai_asr_realtime_sessions_ended", "Realtime sessions ended, by reason.", ["reason"], registry=registry
        )
        self.refusals = Counter(
            "omoai_asr_realtime_refusals", "Realtime sessions refused, by reason.", ["reason"], registry=registry
        )
        for reason in REFUSALS:  # every series exists from the first scrape
            self.refusals.labels(reason=reason)
        for end in END_REASONS:
            self.sessions_ended.labels(reason=end)
        self.audio_seconds = Counter(
            "omoai_asr_realtime_audio_seconds", "Seconds of audio streamed into realtime sessions.", registry=registry
        )
        self.commit_latency = Histogram(
            "omoai_asr_realtime_commit_latency_seconds",
            "Time from audio arriving to the delta that commits its text.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.partial_latency = Histogram(
            "omoai_asr_realtime_partial_latency_seconds",
            "Time from audio arriving to the first partial hypothesis covering it.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.final_latency = Histogram(
            "omoai_asr_realtime_final_latency_seconds",
            "Time from an item's commit (client or server VAD) to its completed transcript.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.item_duration = Histogram(
            "omoai_asr_realtime_item_audio_seconds",
            "Audio of one committed realtime item.",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.lag = Gauge(
            "omoai_asr_realtime_lag_seconds",
            "Most audio (seconds) an open session has fed and not yet had decoded.",
            registry=registry,
        )

    def watch_lag(self, lag: Callable[[], float]) -> None:
        self.lag.set_function(lag)
