"""GPU memory policy: inference mode plus explicit autocast on every inference path, and one
counted function for every allocator cache clear.

Rules this module enforces:
- :meth:`MemoryPolicy.inference` is ``torch.inference_mode()`` and
  ``torch.autocast(device_type, dtype=..., enabled=...)`` with arguments chosen by configuration.
- No cache clear inside per-chunk or per-window loops; :meth:`MemoryPolicy.window_done` clears
  only when ``OMOAI_DEBUG_EMPTY_CACHE`` is on (troubleshooting).
- Every clear goes through :meth:`MemoryPolicy.clear_cache`, which counts it in
  ``omoai_gpu_cache_clears_total{reason}``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from omoai_core.errors import ConfigError
from omoai_core.metrics import CACHE_CLEAR_REASONS, cache_clears_counter
from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(spec: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is a startup error."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {spec!r} requested but CUDA is not available; use --device cpu or auto")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {spec!r} does not exist ({torch.cuda.device_count()} CUDA devices)")
        return dev
    if spec == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"unknown device {spec!r}; expected auto, cpu, cuda or cuda:N")


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    """The compute dtype: ``auto`` is bf16 (or fp16 on GPUs without bf16) on CUDA and fp32 on CPU.

    Reduced precision is never switched on silently on CPU: asking for fp16 there is an error
    (CPU kernels for it are slow or missing); bf16 on CPU only when asked for explicitly.
    """
    spec = spec.strip().lower()
    if spec == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if spec not in _DTYPES:
        raise ConfigError(f"unknown dtype {spec!r}; expected auto, fp32, fp16 or bf16")
    if spec == "fp16" and device.type == "cpu":
        raise ConfigError("dtype fp16 is not supported on CPU; use fp32 (or bf16 explicitly)")
    return _DTYPES[spec]


@dataclass
class MemoryPolicy:
    """How one service uses its accelerator. Build one per process and pass it down."""

    device: torch.device
    dtype: torch.dtype
    debug_empty_cache: bool = False
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    _clears: Counter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._clears = cache_clears_counter(self.registry)

    @classmethod
    def from_settings(
        cls, device: str, dtype: str, *, debug_empty_cache: bool, registry: CollectorRegistry
    ) -> MemoryPolicy:
        dev = resolve_device(device)
        return cls(dev, resolve_dtype(dtype, dev), debug_empty_cache=debug_empty_cache, registry=registry)

    @property
    def autocast_enabled(self) -> bool:
        """Autocast only for a reduced dtype; fp32 runs the weights' own precision."""
        return self.dtype != torch.float32

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """The context every inference path runs under."""
        with (
            torch.inference_mode(),
            torch.autocast(device_type=self.device.type, dtype=self.dtype, enabled=self.autocast_enabled),
        ):
            yield

    def clear_cache(self, reason: str) -> None:
        """The only place that empties the CUDA caching allocator; counted by reason."""
        if reason not in CACHE_CLEAR_REASONS:
            raise ValueError(f"unknown cache clear reason {reason!r}")
        self._clears.labels(reason=reason).inc()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        log.debug("GPU cache cleared (%s)", reason)

    def window_done(self) -> None:
        """Called after each chunk/window of a long input: clears only with the debug switch on."""
        if self.debug_empty_cache:
            self.clear_cache("debug_per_window")

    def clears(self, reason: str) -> float:
        """How many clears were counted for ``reason`` (for tests and diagnostics)."""
        return self.registry.get_sample_value("omoai_gpu_cache_clears_total", {"reason": reason}) or 0.0

    def memory_stats(self) -> dict[str, int]:
        """Allocated/reserved/peak bytes on CUDA; empty on CPU."""
        if self.device.type != "cuda":
            return {}
        return {
            "allocated": torch.cuda.memory_allocated(self.device),
            "reserved": torch.cuda.memory_reserved(self.device),
            "peak": torch.cuda.max_memory_allocated(self.device),
        }
