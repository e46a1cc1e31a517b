"""The app factory: ``create_app(settings, engine_factory=..., registry=...)``.

The lifespan owns the engine. Startup returns at once so ``/healthz`` answers while the model
loads in a worker thread; ``/readyz`` turns ready only after the load and a warm-up decode. A
load that fails is fatal: it is logged with what to fix and ``on_fatal`` stops the server
(the CLI exits non-zero; in a pod the container restarts with the message in its log).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable

import numpy as np
from fastapi import APIRouter, Depends, FastAPI
from omoai_core.errors import OmoaiError
from omoai_http.admission import Admission
from omoai_http.auth import bearer_auth
from omoai_http.app import install_common
from prometheus_client import CollectorRegistry

from omoai_asr.batcher import Batcher, Engine
from omoai_asr.fetch import Resolver, system_resolver
from omoai_asr.metrics import AsrMetrics
from omoai_asr.protocol import TranscriptionOptions
from omoai_asr.routes import openai as openai_routes
from omoai_asr.routes import transcriptions
from omoai_asr.serving import AsrServing
from omoai_asr.settings import AsrSettings

log = logging.getLogger(__name__)

try:
    __version__ = importlib.metadata.version("omoai-asr")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

#: Builds the engine on the memory policy the app made (tests pass a fake here).
EngineFactory = Callable[["MemoryPolicy"], Engine]  # noqa: F821 - torch-free annotation
#: Builds the diarization backend (None: diarization off); default: ``OMOAI_DIARIZATION_BACKEND``.
DiarizerFactory = Callable[["MemoryPolicy"], "DiarizationBackend | None"]  # noqa: F821


def default_engine_factory(settings: AsrSettings) -> EngineFactory:
    def load(policy):
        from omoai_asr.engine import ChunkFormerEngine

        return ChunkFormerEngine.load(settings.model, policy)

    return load


def _default_diarizer_factory(settings: AsrSettings) -> DiarizerFactory:
    def load(policy):
        from omoai_asr.diarization.loading import load_backend

        return load_backend(settings, policy)

    return load


def _terminate(_: BaseException) -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def create_app(
    settings: AsrSettings,
    *,
    engine_factory: EngineFactory | None = None,
    registry: CollectorRegistry | None = None,
    on_fatal: Callable[[BaseException], None] = _terminate,
    resolver: Resolver = system_resolver,
    diarizer_factory: DiarizerFactory | None = None,
) -> FastAPI:
    registry = registry if registry is not None else CollectorRegistry()
    factory = engine_factory or default_engine_factory(settings)
    diarizer_factory = diarizer_factory or _default_diarizer_factory(settings)
    model_name = settings.served_name()
    metrics = AsrMetrics(registry, model_name)
    admission = Admission(settings.max_concurrency, settings.max_queue, registry=registry, service="asr")
    token = settings.resolved_token()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.create_task(_load(app), name="asr-load")
        try:
            yield
        finally:
            loader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await loader
            serving: AsrServing | None = getattr(app.state, "serving", None)
            if serving is not None:
                serving.ready = False
                await serving.batcher.stop()
            policy = getattr(app.state, "policy", None)
            if policy is not None and policy.device.type == "cuda":
                policy.clear_cache("shutdown")

    async def _load(app: FastAPI) -> None:
        try:
            from omoai_gpu.memory import MemoryPolicy

            if settings.torch_threads:
                import torch

                torch.set_num_threads(settings.torch_threads)
            policy = MemoryPolicy.from_settings(
                settings.device, settings.dtype, debug_empty_cache=settings.debug_empty_cache, registry=registry
            )
            app.state.policy = policy
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
            app.state.serving.batcher = batcher
            app.state.serving.diarizer = await asyncio.to_thread(diarizer_factory, policy)
            metrics.build_info(__version__, str(policy.device), str(policy.dtype).removeprefix("torch."))
            if policy.device.type == "cuda":
                metrics.gpu_memory(str(policy.device), policy.memory_stats)
            if settings.warmup:
                await batcher.run_in_engine_thread(lambda: _warm_up(engine, settings))
            app.state.serving.ready = True
            log.info("model %s ready in %.1f s", model_name, time.perf_counter() - started)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            message = e.message if isinstance(e, OmoaiError) else f"{type(e).__name__}: {e}"
            log.error("cannot serve: %s", message, exc_info=not isinstance(e, OmoaiError))
            app.state.load_error = e
            on_fatal(e)

    app = FastAPI(
        title="OMOAI ASR",
        version=__version__,
        summary="Long-form ChunkFormer speech recognition with an OpenAI-compatible API.",
        lifespan=lifespan,
    )
    app.state.started_at = int(time.time())
    app.state.load_error = None
    app.state.serving = AsrServing(
        settings,
        batcher=None,  # type: ignore[arg-type] - set once the engine is loaded
        admission=admission,
        metrics=metrics,
        model_name=model_name,
        resolver=resolver,
    )
    install_common(app, settings, registry=registry, ready=lambda: app.state.serving.ready)
    api = APIRouter(dependencies=[Depends(bearer_auth(token))])
    api.include_router(transcriptions.router)
    api.include_router(openai_routes.router)
    app.include_router(api)
    return app


def _warm_up(engine: Engine, settings: AsrSettings) -> None:
    """One short decode with the default options: first-call allocations and kernel choices."""
    rng = np.random.default_rng(0)
    samples = (rng.standard_normal(16000) * 300).astype(np.int16)
    engine.transcribe_batch([samples], TranscriptionOptions().decode_options(settings))
