"""vLLM's async engine in-process (GPU nodes). Deliberately thin: vLLM batches and schedules, we
render the chat template, submit, and count tokens. ``vllm`` is imported only when this backend
loads, so the service installs and tests without it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from omoai_core.errors import ConfigError, ModelLoadError, UnavailableError
from omoai_gpu.memory import MemoryPolicy

from omoai_llm.backends.base import (
    DEFAULT_SOURCE,
    ChatMessage,
    Completion,
    JsonSchema,
    ModelSource,
    check_room,
    render_prompt,
    require_model,
)

log = logging.getLogger(__name__)

_DTYPE_NAMES = {"torch.float32": "float32", "torch.float16": "float16", "torch.bfloat16": "bfloat16"}


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise ConfigError(
            "the vllm backend needs vLLM on a GPU node: pip install 'omoai-llm[vllm]' "
            "(or use --backend transformers, or --backend openai against a vLLM server)"
        ) from e
    return vllm


class VllmBackend:
    def __init__(self, model_name: str, engine: Any, tokenizer: Any, context_tokens: int, vllm: Any) -> None:
        self._name = model_name
        self._engine = engine
        self._tok = tokenizer
        self._context = context_tokens
        self._vllm = vllm

    @classmethod
    async def load(
        cls,
        model: str,
        policy: MemoryPolicy,
        source: ModelSource = DEFAULT_SOURCE,
        *,
        gpu_memory_utilization: float = 0.85,
        tensor_parallel_size: int = 1,
    ) -> VllmBackend:
        vllm = _import_vllm()
        require_model(model)
        if source.offline:
            import os

            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        args = vllm.AsyncEngineArgs(
            model=model,
            revision=source.revision,
            trust_remote_code=source.trust_remote_code,
            dtype=_DTYPE_NAMES.get(str(policy.dtype), "auto"),
            max_model_len=source.context_tokens,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            disable_log_stats=False,  # keeps vllm:* metrics flowing
        )
        try:
            engine = vllm.AsyncLLMEngine.from_engine_args(args)
            tokenizer = await engine.get_tokenizer()
            config = await engine.get_model_config()
        except (OSError, ValueError, RuntimeError) as e:
            raise ModelLoadError(f"vLLM cannot load model {model!r}: {e}", details={"model": model}) from e
        return cls(model, engine, tokenizer, int(config.max_model_len), vllm)

    @property
    def model_name(self) -> str:
        return self._name

    @property
    def context_tokens(self) -> int:
        return self._context

    def count_tokens(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False))

    def render(self, messages: Sequence[ChatMessage]) -> str:
        return render_prompt(self._tok, messages)

    def _structured(self, schema: JsonSchema) -> dict[str, Any]:
        """vLLM's structured-outputs argument for ``schema`` (named ``structured_outputs`` since
        vLLM 0.10, ``guided_decoding`` before)."""
        sampling = self._vllm.sampling_params
        if hasattr(sampling, "StructuredOutputsParams"):
            return {"structured_outputs": sampling.StructuredOutputsParams(json=schema)}
        return {"guided_decoding": sampling.GuidedDecodingParams(json=schema)}

    async def generate(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        schema: JsonSchema | None = None,
    ) -> Completion:
        if self._engine is None:
            raise UnavailableError(f"model {self._name} was unloaded")
        prompt = self.render(messages)
        n_prompt = self.count_tokens(prompt)
        room = check_room(n_prompt, self._context, self._name)
        extra = self._structured(schema) if schema is not None else {}
        params = self._vllm.SamplingParams(max_tokens=min(max_tokens, room), temperature=temperature, **extra)
        final = None
        async for out in self._engine.generate(prompt, params, request_id=uuid.uuid4().hex):
            final = out
        if final is None or not final.outputs:
            return Completion("", n_prompt, 0, "stop")
        o = final.outputs[0]
        return Completion(o.text, len(final.prompt_token_ids or []) or n_prompt, len(o.token_ids), o.finish_reason)

    async def close(self) -> None:
        engine, self._engine, self._tok = self._engine, None, None
        shutdown = getattr(engine, "shutdown", None)
        if callable(shutdown):
            shutdown()
