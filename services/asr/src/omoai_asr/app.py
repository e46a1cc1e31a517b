"""The app factory: ``create_app(settings, engine_factory=..., registry=...)``.

The lifespan owns the engine through :func:`omoai_asr.runtime.asr_runtime`, entered in a task of
its own: startup returns at once so ``/healthz`` answers while the model loads in a worker thread;
``/readyz`` turns ready only after the load and a warm-up decode. A load that fails is fatal: it
is logged with what to fix and ``on_fatal`` stops the server (the CLI exits non-zero; in a pod the
container restarts with the message in its log).
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

from fastapi import APIRouter, FastAPI
from omoai_core.errors import OmoaiError
from omoai_http.admission import Admission
from omoai_http.app import docs_options, install_common
from prometheus_client import CollectorRegistry

from omoai_asr.fetch import Resolver, system_resolver
from omoai_asr.metrics import AsrMetrics
from omoai_asr.realtime import route as realtime_route
from omoai_asr.realtime.hub import RealtimeHub
from omoai_asr.realtime.metrics import RealtimeMetrics
from omoai_asr.routes import openai as openai_routes
from omoai_asr.routes import transcriptions
from omoai_asr.runtime import (
    DiarizerFactory,
    EngineFactory,
    asr_runtime,
    default_diarizer_factory,
    default_engine_factory,
)
from omoai_asr.serving import AsrServing
from omoai_asr.settings import AsrSettings

log = logging.getLogger(__name__)

try:
    __version__ = importlib.metadata.version("omoai-asr")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"


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
    diarizer_factory = diarizer_factory or default_diarizer_factory(settings)
    model_name = settings.served_name()
    metrics = AsrMetrics(registry, model_name)
    admission = Admission(settings.max_concurrency, settings.max_queue, registry=registry, service="asr")
    token = settings.resolved_token()
    serving = AsrServing(settings, admission=admission, metrics=metrics, model_name=model_name, resolver=resolver)

    async def run_engine(stop: asyncio.Event) -> None:
        """Own the runtime: load it, serve with it until ``stop``, then close it."""
        loaded = False
        try:
            async with asr_runtime(
                settings,
                factory,
                diarizer_factory=diarizer_factory,
                registry=registry,
                metrics=metrics,
                version=__version__,
            ) as rt:
                loaded = True
                serving.attach(rt)
                try:
                    await stop.wait()
                finally:
                    serving.detach()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if loaded:
                log.exception("stopping the engine failed")
                return
            message = e.message if isinstance(e, OmoaiError) else f"{type(e).__name__}: {e}"
            log.error("cannot serve: %s", message)  # one line; the traceback only at DEBUG
            log.debug("model load failure", exc_info=True)
            app.state.load_error = e
            on_fatal(e)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Startup returns at once (``/healthz`` answers while the model loads); ``/readyz`` and the
        # API turn ready when the runtime is attached.
        stop = asyncio.Event()
        engine = asyncio.create_task(run_engine(stop), name="asr-engine")
        try:
            yield
        finally:
            stop.set()
            if not serving.ready:
                engine.cancel()  # still loading: nothing to drain
            with contextlib.suppress(asyncio.CancelledError):
                await engine

    app = FastAPI(
        title="OMOAI ASR",
        version=__version__,
        summary="Long-form ChunkFormer speech recognition with an OpenAI-compatible API.",
        lifespan=lifespan,
        **docs_options(settings),
    )
    app.state.started_at = int(time.time())
    app.state.load_error = None
    app.state.serving = serving
    app.state.token = token
    app.state.realtime = hub = RealtimeHub(settings, serving, RealtimeMetrics(registry))
    install_common(
        app,
        settings,
        registry=registry,
        ready=lambda: app.state.serving.ready,
        token=token,
        slots_taken=hub.slots_taken,
    )
    api = APIRouter()  # authenticated by install_common's middleware, before any body is read
    api.include_router(transcriptions.router)
    api.include_router(openai_routes.router)
    app.include_router(api)
    if settings.realtime_enabled:
        app.include_router(realtime_route.router)  # WebSocket: the route checks the token itself
    return app
