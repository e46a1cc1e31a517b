"""The ASR service's Prometheus metrics, on an injected registry.

``omoai_inference_duration_seconds{task="transcribe",model}`` observes the wall time of each
engine call (one masked batch, one long recording, or one step of the live streams: streamed
files and realtime sessions), so its ``_sum`` is the time the engine was busy; with ``omoai_asr_audio_seconds_total`` the real-time factor is one PromQL ratio::

    rate(omoai_inference_duration_seconds_sum{task="transcribe"}[5m])
      / rate(omoai_asr_audio_seconds_total[5m])

End-to-end latency per request (queueing, fetching, audio decoding included) is
``omoai_asr_request_duration_seconds``. In-flight and queue-depth gauges come from
:class:`omoai_http.admission.Admission`; ``omoai_gpu_cache_clears_total`` from the memory policy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from omoai_core.metrics import DURATION_BUCKETS, build_info, gpu_memory_gauges, inference_duration_histogram
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: The bounded set of request outcomes.
Outcome = Literal["success", "invalid_input", "overloaded", "timeout", "cancelled", "unavailable", "error"]
OUTCOMES: tuple[Outcome, ...] = (
    "success",
    "invalid_input",
    "overloaded",
    "timeout",
    "cancelled",
    "unavailable",
    "error",
)
BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
AUDIO_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)


class AsrMetrics:
    def __init__(self, registry: CollectorRegistry, model: str) -> None:
        self.registry = registry
        self.model = model
        self._inference = inference_duration_histogram(registry)
        self._inference.labels(task="transcribe", model=model)  # exists from the start: rate() sees the first call
        self.audio_seconds = Counter(
            "omoai_asr_audio_seconds", "Seconds of audio transcribed.", ["model"], registry=registry
        ).labels(model=model)
        self.requests = Counter(
            "omoai_asr_requests", "Transcription requests, by outcome.", ["outcome"], registry=registry
        )
        for outcome in OUTCOMES:  # every series exists from the first scrape, so rate() works at once
            self.requests.labels(outcome=outcome)
        self.request_duration = Histogram(
            "omoai_asr_request_duration_seconds",
            "End-to-end time of one transcription request (queueing, fetching and decoding included).",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.request_audio = Histogram(
            "omoai_asr_request_audio_seconds",
            "Audio duration of one transcription request.",
            buckets=AUDIO_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "omoai_asr_batch_size",
            "Requests decoded together in one engine call.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.batch_pending = Gauge(
            "omoai_asr_batch_queue_depth", "Decoded requests waiting for the engine.", registry=registry
        )
        self.dropped = Counter(
            "omoai_asr_batch_dropped",
            "Queued requests dropped before compute (client gone or timed out).",
            registry=registry,
        )

    def observe_engine_call(self, seconds: float, batch_size: int, audio_seconds: float) -> None:
        """One engine call: its wall time, how many inputs it decoded together and the seconds of
        audio it decoded (the batcher's file batches and the live scheduler's steps alike)."""
        self._inference.labels(task="transcribe", model=self.model).observe(seconds)
        self.batch_size.observe(batch_size)
        self.audio_seconds.inc(audio_seconds)

    def outcome(self, outcome: Outcome) -> None:
        self.requests.labels(outcome=outcome).inc()

    def build_info(self, version: str, device: str, dtype: str) -> None:
        build_info(self.registry, "asr", version, model=self.model, device=device, dtype=dtype)

    def gpu_memory(self, device: str, stats: Callable[[], dict[str, int]]) -> None:
        """Allocated/reserved gauges read from the allocator at scrape time (CUDA only)."""
        allocated, reserved = gpu_memory_gauges(self.registry)
        allocated.labels(device=device).set_function(lambda: stats().get("allocated", 0))
        reserved.labels(device=device).set_function(lambda: stats().get("reserved", 0))


def outcome_of(code: str, status: int) -> Outcome:
    """Map an error code and status onto the bounded outcome label."""
    if status == 429:
        return "overloaded"
    if status == 504 or code == "timeout":
        return "timeout"
    if status == 503:
        return "unavailable"
    if 400 <= status < 500:
        return "invalid_input"
    return "error"


# -- speaker diarization -------------------------------------------------------------------------

RTF_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
SPEAKER_BUCKETS = (0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20)


class DiarizationMetrics:
    """``omoai_asr_diarization_duration_seconds{backend}`` (latency; its ``_sum`` over
    ``omoai_asr_diarized_audio_seconds_total`` is the real-time factor), the per-recording real-time
    factor and the number of speakers found per recording (a job is one recording)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "omoai_asr_diarization_duration_seconds",
            "Wall time of diarizing one recording (VAD, embeddings, clustering).",
            ["backend"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.audio_seconds = Counter(
            "omoai_asr_diarized_audio_seconds", "Seconds of audio diarized.", registry=registry
        )
        self.rtf = Histogram(
            "omoai_asr_diarization_real_time_factor",
            "Diarization wall time over audio duration, per recording.",
            buckets=RTF_BUCKETS,
            registry=registry,
        )
        self.speakers = Histogram(
            "omoai_asr_diarization_speakers",
            "Speakers found in one recording.",
            buckets=SPEAKER_BUCKETS,
            registry=registry,
        )

    def observe(self, backend: str, seconds: float, audio_seconds: float, speakers: int) -> None:
        self.duration.labels(backend=backend).observe(seconds)
        self.audio_seconds.inc(audio_seconds)
        if audio_seconds > 0:
            self.rtf.observe(seconds / audio_seconds)
        self.speakers.observe(speakers)
