"""The app factory. The models' lifetime is owned by :func:`llm_runtime`, an async context manager
entered in the app's lifespan: models load before the first request is accepted and are closed
(with the GPU memory released) on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from fastapi import FastAPI
from omoai_core.errors import OmoaiError
from omoai_core.metrics import build_info, gpu_memory_gauges
from omoai_gpu.memory import MemoryPolicy
from omoai_http.admission import Admission
from omoai_http.app import docs_options, install_common
from omoai_http.lifecycle import BodyLimits, RequestLifecycle
from prometheus_client import CollectorRegistry

from omoai_llm import __version__
from omoai_llm.backends import load_backend
from omoai_llm.metrics import ForeignMetrics, LlmMetrics
from omoai_llm.models import Loader, ModelManager, Resident
from omoai_llm.prompts import load_prompts
from omoai_llm.protocol import ALL_TASKS
from omoai_llm.routes import build_router
from omoai_llm.service import LlmService
from omoai_llm.settings import LlmSettings
from omoai_llm.tagger.engine import TaggerEngine, TaggerOptions

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: LlmSettings
    policy: MemoryPolicy
    manager: ModelManager
    service: LlmService


@contextlib.asynccontextmanager
async def llm_runtime(
    settings: LlmSettings,
    registry: CollectorRegistry,
    *,
    policy: MemoryPolicy | None = None,
    metrics: LlmMetrics | None = None,
    loader: Loader | None = None,
) -> AsyncIterator[Runtime]:
    """Load the model(s) per settings; on exit close them and release their memory."""
    if policy is None:
        policy = MemoryPolicy.from_settings(
            settings.device, settings.dtype, debug_empty_cache=settings.debug_empty_cache, registry=registry
        )
    metrics = metrics or LlmMetrics.create(registry)
    prompts = load_prompts(settings.prompts_file)

    async def default_loader(model: str) -> Resident:
        if model == settings.tagger_model:
            return await load_tagger(settings, policy)
        return await load_backend(settings, model, policy)

    manager = ModelManager(
        loader or default_loader,
        policy,
        punctuation_model=settings.model,
        summary_model=settings.summary_model,
        tagger_model=settings.tagger_model,
        tagger_first=settings.punctuation_method == "tagger",
        single_resident=settings.single_model_resident,
        on_switch=lambda model: metrics.switches.labels(model=model).inc(),
    )
    try:
        await manager.start()
        yield Runtime(settings, policy, manager, LlmService(settings, manager, prompts, metrics))
    finally:
        await manager.close()


async def load_tagger(settings: LlmSettings, policy: MemoryPolicy) -> TaggerEngine:
    """The configured tagger, loaded in a thread (it reads weights)."""
    assert settings.tagger_model is not None
    options = TaggerOptions(
        iterations=settings.tagger_iterations,
        confidence_bias=settings.tagger_confidence_bias,
        min_error_probability=settings.tagger_min_error_probability,
        window_words=settings.tagger_window_words,
        margin_words=settings.tagger_margin_words,
        max_batch_size=settings.tagger_max_batch_size,
        batch_wait_ms=settings.batch_wait_ms,
    )
    return await asyncio.to_thread(
        TaggerEngine.load,
        settings.tagger_model,
        policy,
        options=options,
        offline=settings.offline,
    )


def create_app(
    settings: LlmSettings,
    *,
    registry: CollectorRegistry | None = None,
    loader: Loader | None = None,
    on_fatal: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """The ASGI app. ``loader`` replaces backend loading (tests inject fake backends at that seam).

    A start-up failure is logged as one line. Without ``on_fatal`` it is raised from the lifespan;
    with it (the CLI), ``on_fatal`` is called and the app starts unready so the server can stop
    itself cleanly and the process exit with its documented code.
    """
    registry = registry if registry is not None else CollectorRegistry()
    build_info(registry, "llm", __version__, backend=settings.backend)
    policy = MemoryPolicy.from_settings(
        settings.device, settings.dtype, debug_empty_cache=settings.debug_empty_cache, registry=registry
    )
    models = [m for m in (settings.model, settings.summary_model, settings.tagger_model) if m]
    metrics = LlmMetrics.create(registry).initialise(ALL_TASKS, models)
    if settings.backend == "vllm":
        registry.register(ForeignMetrics("vllm:"))  # vLLM's engine (own process) reports its memory there
    elif policy.device.type == "cuda":  # the transformers backend allocates in this process
        allocated, reserved = gpu_memory_gauges(registry)
        allocated.labels(device=str(policy.device)).set_function(lambda: policy.memory_stats().get("allocated", 0))
        reserved.labels(device=str(policy.device)).set_function(lambda: policy.memory_stats().get("reserved", 0))
    token = settings.resolved_token()
    runtime: dict[str, Runtime] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stack = contextlib.AsyncExitStack()
        try:
            rt = await stack.enter_async_context(
                llm_runtime(settings, registry, policy=policy, metrics=metrics, loader=loader)
            )
        except Exception as e:
            await stack.aclose()
            message = e.message if isinstance(e, OmoaiError) else f"{type(e).__name__}: {e}"
            log.error("cannot start: %s", message)
            log.debug("start-up failure", exc_info=True)
            app.state.load_error = e
            if on_fatal is None:
                raise
            on_fatal(e)
            yield
            return
        try:
            runtime["rt"] = rt
            app.state.service = rt.service
            app.state.runtime = rt
            log.info("LLM service ready (%s: %s)", settings.backend, ", ".join(rt.manager.resident))
            yield
        finally:
            runtime.clear()
            app.state.service = None
            await stack.aclose()

    app = FastAPI(title="OMOAI LLM service", version=__version__, lifespan=lifespan, **docs_options(settings))
    app.state.load_error = None
    app.state.service = None
    app.state.settings = settings
    app.state.registry = registry
    app.state.policy = policy
    app.state.admission = Admission(settings.max_concurrency, settings.max_queue, registry=registry, service="llm")
    app.state.lifecycle = RequestLifecycle(
        app.state.admission, deadline_s=settings.request_timeout_s, limits=BodyLimits.from_settings(settings)
    )
    install_common(
        app, settings, registry=registry, ready=lambda: "rt" in runtime and runtime["rt"].manager.ready, token=token
    )
    app.include_router(build_router())
    return app
