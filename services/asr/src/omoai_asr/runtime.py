"""The engine's lifetime, owned by one async context manager (as the LLM service's
``llm_runtime``): :func:`asr_runtime` makes the memory policy, loads the model in a worker thread,
starts the batcher and warms it up, yields an :class:`AsrRuntime` with every part in place, and on
exit stops the batcher and hands the accelerator memory back. Nothing is ever half built: either
the whole runtime exists or none of it does.

torch is imported only when the runtime is entered (``omoai_gpu``, the engine), never by importing
this module: the HTTP layer stays torch-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import CollectorRegistry

from omoai_asr.batcher import Batcher, Engine
from omoai_asr.geometry import SAMPLE_RATE
from omoai_asr.live import LiveScheduler, StreamingEngine
from omoai_asr.metrics import AsrMetrics
from omoai_asr.protocol import TranscriptionOptions
from omoai_asr.settings import AsrSettings

if TYPE_CHECKING:
    from omoai_gpu.memory import MemoryPolicy

    from omoai_asr.diarization.types import DiarizationBackend

log = logging.getLogger(__name__)

#: Builds the engine on the memory policy the runtime made (tests pass a fake here).
EngineFactory = Callable[["MemoryPolicy"], Engine]


def default_engine_factory(settings: AsrSettings) -> EngineFactory:
    def load(policy: MemoryPolicy) -> Engine:
        from omoai_asr.engine import ChunkFormerEngine

        return ChunkFormerEngine.load(settings.model, policy)

    return load


#: Builds the diarization backend (None: diarization off); default: ``OMOAI_DIARIZATION_BACKEND``.
DiarizerFactory = Callable[["MemoryPolicy"], "DiarizationBackend | None"]


def default_diarizer_factory(settings: AsrSettings) -> DiarizerFactory:
    def load(policy: MemoryPolicy) -> DiarizationBackend | None:
        from omoai_asr.diarization.loading import load_backend

        return load_backend(settings, policy)

    return load


@dataclass(frozen=True)
class AsrRuntime:
    policy: MemoryPolicy
    engine: Engine
    batcher: Batcher
    diarizer: DiarizationBackend | None = None
    live: LiveScheduler | None = None  # None: the engine cannot decode live streams


@contextlib.asynccontextmanager
async def asr_runtime(
    settings: AsrSettings,
    factory: EngineFactory,
    *,
    diarizer_factory: DiarizerFactory | None = None,
    registry: CollectorRegistry,
    metrics: AsrMetrics,
    version: str,
) -> AsyncIterator[AsrRuntime]:
    """Load, start and warm up the engine per ``settings``; on exit stop it and release its memory."""
    from omoai_gpu.memory import MemoryPolicy

    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    policy = MemoryPolicy.from_settings(
        settings.device, settings.dtype, debug_empty_cache=settings.debug_empty_cache, registry=registry
    )
    metrics.build_info(version, str(policy.device), str(policy.dtype).removeprefix("torch."))
    started = time.perf_counter()
    engine = await asyncio.to_thread(factory, policy)
    batcher = Batcher(
        engine,
        max_batch_size=settings.max_batch_size,
        batch_window_s=settings.batch_window_ms / 1000.0,
        metrics=metrics,
        on_oom=lambda: policy.clear_cache("oom_recovery"),
    )
    batcher.start()
    live: LiveScheduler | None = None
    try:
        diarizer = await asyncio.to_thread(diarizer_factory, policy) if diarizer_factory is not None else None
        if policy.device.type == "cuda":
            metrics.gpu_memory(str(policy.device), policy.memory_stats)
        if settings.warmup:
            await batcher.run_in_engine_thread(lambda: _warm_up(engine, settings))
        if isinstance(engine, StreamingEngine):
            live = LiveScheduler(
                engine,
                batcher.run_in_engine_thread,
                max_streams=settings.live_max_streams,
                max_buffered_s=settings.live_max_buffered_s,
                partial_interval_s=settings.live_partial_interval_s,
                metrics=metrics,
            )
            live.start()
        log.info("model %s ready in %.1f s", settings.served_name(), time.perf_counter() - started)
        yield AsrRuntime(policy, engine, batcher, diarizer, live)
    finally:
        if live is not None:
            await live.stop()
        await batcher.stop()
        if policy.device.type == "cuda":
            policy.clear_cache("shutdown")


def _warm_up(engine: Engine, settings: AsrSettings) -> None:
    """One short decode with the default options: first-call allocations and kernel choices."""
    rng = np.random.default_rng(0)
    samples = (rng.standard_normal(SAMPLE_RATE) * 300).astype(np.int16)
    engine.transcribe_batch([samples], TranscriptionOptions().decode_options(settings))
