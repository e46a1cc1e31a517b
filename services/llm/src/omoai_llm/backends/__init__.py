"""Backends behind one Protocol (``base.Backend``): vllm, transformers, openai.

:func:`load_backend` is the only place that picks one from settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from omoai_core.errors import ConfigError, ModelLoadError
from omoai_gpu.memory import MemoryPolicy

from omoai_llm.backends.base import Backend, ChatMessage, Completion, ModelSource, estimate_tokens
from omoai_llm.settings import LlmSettings

__all__ = ["Backend", "ChatMessage", "Completion", "ModelSource", "load_backend"]


async def load_backend(settings: LlmSettings, model: str, policy: MemoryPolicy) -> Backend:
    """Load ``model`` with the configured backend (blocking loads run in a thread)."""
    if settings.backend == "transformers":
        from omoai_llm.backends.transformers_backend import TransformersBackend

        return await asyncio.to_thread(
            TransformersBackend.load,
            model,
            policy,
            ModelSource.of(settings),
            max_batch_size=settings.max_batch_size,
            batch_wait_ms=settings.batch_wait_ms,
        )
    if settings.backend == "vllm":
        from omoai_llm.backends.vllm_backend import VllmBackend

        return await VllmBackend.load(
            model,
            policy,
            ModelSource.of(settings),
            gpu_memory_utilization=settings.gpu_memory_utilization,
            tensor_parallel_size=settings.tensor_parallel_size,
        )
    if settings.backend == "openai":
        from omoai_llm.backends.openai_backend import OpenAIBackend

        if not model:
            raise ConfigError("no model configured: set OMOAI_MODEL or --model to the served model name")
        counter = await asyncio.to_thread(_tokenizer_counter, settings) if settings.tokenizer else estimate_tokens
        backend = OpenAIBackend(
            model,
            settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key else None,
            timeout_s=settings.openai_timeout_s,
            retries=settings.openai_retries,
            backoff_s=settings.openai_backoff_s,
            context_tokens=settings.context_tokens,
            counter=counter,
        )
        try:
            await backend.check()
        except Exception:
            await backend.close()
            raise
        return backend
    raise ConfigError(f"unknown backend {settings.backend!r}")  # pragma: no cover - settings validate it


def _tokenizer_counter(settings: LlmSettings) -> Callable[[str], int]:
    try:
        from transformers import AutoTokenizer
    except ImportError as e:
        raise ConfigError("OMOAI_TOKENIZER needs the transformers extra: pip install 'omoai-llm[transformers]'") from e
    try:
        tok = AutoTokenizer.from_pretrained(settings.tokenizer, local_files_only=settings.offline)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load tokenizer {settings.tokenizer!r}: {e}") from e
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])
