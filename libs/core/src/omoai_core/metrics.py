"""Prometheus helpers: every metric takes an injected registry (tests build a fresh one), one
``omoai_`` prefix, base units, ``_total`` counters and bounded labels.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

#: Latency buckets in seconds from 10 ms to 4 hours: a request may carry an hours-long recording.
DURATION_BUCKETS: Sequence[float] = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
    1200,
    1800,
    3600,
    7200,
    14400,
)

#: The reasons a GPU cache clear may have; a label outside this set is a programming error.
CACHE_CLEAR_REASONS = frozenset({"debug_per_window", "model_switch", "oom_recovery", "shutdown"})


def cache_clears_counter(registry: CollectorRegistry) -> Counter:
    """``omoai_gpu_cache_clears_total{reason}``: every ``torch.cuda.empty_cache()`` counted.

    Every reason's series exists from the start at 0, so rates and alerts see the first clear.
    """
    counter = Counter(
        "omoai_gpu_cache_clears",
        "GPU allocator cache clears, by reason.",
        ["reason"],
        registry=registry,
    )
    for reason in sorted(CACHE_CLEAR_REASONS):
        counter.labels(reason=reason)
    return counter


def inference_duration_histogram(registry: CollectorRegistry) -> Histogram:
    """``omoai_inference_duration_seconds{task,model}``."""
    return Histogram(
        "omoai_inference_duration_seconds",
        "Wall time of one inference task.",
        ["task", "model"],
        buckets=DURATION_BUCKETS,
        registry=registry,
    )


def build_info(registry: CollectorRegistry, component: str, version: str, **extra: str) -> Info:
    """``omoai_build_info{component,version,python,...} 1``."""
    info = Info("omoai_build", "Build and runtime information.", registry=registry)
    info.info({"component": component, "version": version, "python": platform.python_version(), **extra})
    return info


def gpu_memory_gauges(registry: CollectorRegistry) -> tuple[Gauge, Gauge]:
    """``omoai_gpu_memory_allocated_bytes`` and ``omoai_gpu_memory_reserved_bytes`` by device."""
    allocated = Gauge("omoai_gpu_memory_allocated_bytes", "Bytes held by live tensors.", ["device"], registry=registry)
    reserved = Gauge(
        "omoai_gpu_memory_reserved_bytes", "Bytes reserved by the caching allocator.", ["device"], registry=registry
    )
    return allocated, reserved
