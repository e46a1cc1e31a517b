"""Backends at their seams: the vLLM adapter against a stand-in ``vllm`` module (vLLM cannot be
installed here), its clear error when vLLM is missing, and loading errors of the transformers
backend."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import pytest
from omoai_core.errors import ConfigError, InvalidInputError, ModelLoadError
from omoai_gpu.memory import MemoryPolicy
from omoai_llm.backends.base import ChatMessage, ModelSource, estimate_tokens, render_plain_prompt
from omoai_llm.metrics import ForeignMetrics
from prometheus_client import CollectorRegistry


def _policy() -> MemoryPolicy:
    return MemoryPolicy.from_settings("cpu", "fp32", debug_empty_cache=False, registry=CollectorRegistry())


class _Tok:
    chat_template = "x"

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(range(len(text.split())))

    def apply_chat_template(self, msgs, add_generation_prompt: bool, tokenize: bool) -> str:
        return " ".join(f"<{m['role']}> {m['content']}" for m in msgs) + " <assistant>"


@dataclass
class _Out:
    text: str
    token_ids: list[int]
    finish_reason: str = "stop"


@dataclass
class _ReqOut:
    prompt_token_ids: list[int]
    outputs: list[_Out] = field(default_factory=list)


def _fake_vllm(seen: dict) -> types.ModuleType:
    mod = types.ModuleType("vllm")

    class AsyncEngineArgs:
        def __init__(self, **kw) -> None:
            seen["args"] = kw

    class SamplingParams:
        def __init__(self, **kw) -> None:
            seen.setdefault("sampling", []).append(kw)

    class Engine:
        shut = False

        async def get_tokenizer(self) -> _Tok:
            return _Tok()

        async def get_model_config(self) -> types.SimpleNamespace:
            return types.SimpleNamespace(max_model_len=64)

        async def generate(self, prompt: str, params, request_id: str):
            seen.setdefault("prompts", []).append(prompt)
            yield _ReqOut([1, 2, 3], [_Out("Xin", [1])])
            yield _ReqOut([1, 2, 3], [_Out("Xin chào.", [1, 2, 3])])

        def shutdown(self) -> None:
            Engine.shut = True

    class AsyncLLMEngine:
        @staticmethod
        def from_engine_args(args) -> Engine:
            return Engine()

    mod.AsyncEngineArgs, mod.SamplingParams, mod.AsyncLLMEngine, mod.Engine = (
        AsyncEngineArgs,
        SamplingParams,
        AsyncLLMEngine,
        Engine,
    )
    return mod


async def test_vllm_adapter_renders_the_chat_template_and_returns_the_final_output(monkeypatch):
    seen: dict = {}
    monkeypatch.setitem(sys.modules, "vllm", _fake_vllm(seen))
    from omoai_llm.backends.vllm_backend import VllmBackend

    b = await VllmBackend.load("org/model", _policy(), ModelSource(context_tokens=64), gpu_memory_utilization=0.5)
    assert seen["args"]["model"] == "org/model" and seen["args"]["dtype"] == "float32"
    assert seen["args"]["gpu_memory_utilization"] == 0.5 and b.context_tokens == 64
    c = await b.generate([ChatMessage("system", "s"), ChatMessage("user", "xin chào")], max_tokens=500)
    assert (c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason) == ("Xin chào.", 3, 3, "stop")
    assert seen["prompts"][0] == "<system> s <user> xin chào <assistant>"
    assert seen["sampling"][0]["max_tokens"] <= 64  # capped by the room left in the context
    with pytest.raises(InvalidInputError):
        await b.generate([ChatMessage("user", "w " * 100)], max_tokens=8)
    await b.close()
    assert sys.modules["vllm"].Engine.shut


async def test_vllm_backend_without_vllm_is_a_clear_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    from omoai_llm.backends.vllm_backend import VllmBackend

    with pytest.raises(ConfigError, match=r"omoai-llm\[vllm\]"):
        await VllmBackend.load("org/model", _policy())


def test_vllm_metrics_are_re_exposed_from_the_global_registry():
    from prometheus_client import Counter, generate_latest

    source, ours = CollectorRegistry(), CollectorRegistry()
    Counter("vllm:prompt_tokens", "p", registry=source).inc(5)
    Counter("other_total", "o", registry=source).inc()
    ours.register(ForeignMetrics("vllm:", source))
    text = generate_latest(ours).decode()
    assert "vllm:prompt_tokens_total 5.0" in text and "other_total" not in text


def test_transformers_backend_names_a_missing_directory():
    from omoai_llm.backends.transformers_backend import TransformersBackend

    with pytest.raises(ModelLoadError, match="does not exist"):
        TransformersBackend.load("/no/such/dir", _policy())


def test_transformers_backend_explains_an_uncached_hub_id_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from omoai_llm.backends.transformers_backend import TransformersBackend

    with pytest.raises(ModelLoadError) as err:
        TransformersBackend.load("omoai-test/not-cached", _policy(), ModelSource(offline=True))
    assert "offline" in err.value.message and err.value.details["model"] == "omoai-test/not-cached"


def test_plain_prompt_and_estimates():
    prompt = render_plain_prompt([ChatMessage("system", "be brief"), ChatMessage("user", "hi")])
    assert prompt == "System: be brief\n\nUser: hi\n\nAssistant:"
    assert estimate_tokens("") == 0 and estimate_tokens("abcde") == 2
    assert estimate_tokens("chào") == 2  # 5 bytes of UTF-8: bytes / 3 wins


@pytest.mark.parametrize("api", ["StructuredOutputsParams", "GuidedDecodingParams"])
async def test_vllm_adapter_asks_for_structured_outputs_with_the_schema(monkeypatch, api):
    """vLLM 0.10+ takes ``structured_outputs=StructuredOutputsParams(json=...)``, older vLLM
    ``guided_decoding=GuidedDecodingParams(json=...)``; the adapter uses what the module has."""
    seen: dict = {}
    mod = _fake_vllm(seen)

    class Params:
        def __init__(self, json) -> None:
            self.json = json

    mod.sampling_params = types.SimpleNamespace(**{api: Params})
    monkeypatch.setitem(sys.modules, "vllm", mod)
    from omoai_llm.backends.vllm_backend import VllmBackend
    from omoai_llm.edits import edits_schema

    b = await VllmBackend.load("org/model", _policy(), ModelSource(context_tokens=64))
    schema = edits_schema(3)
    await b.generate([ChatMessage("user", "1:xin 2:chào 3:bạn")], max_tokens=8, schema=schema)
    await b.generate([ChatMessage("user", "xin chào")], max_tokens=8)
    key = "structured_outputs" if api == "StructuredOutputsParams" else "guided_decoding"
    assert seen["sampling"][0][key].json == schema and key not in seen["sampling"][1]
    await b.close()
