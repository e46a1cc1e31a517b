"""The transformers backend on a tiny random model: concurrent calls are batched, generation runs
under the memory policy's inference context, base models without a chat template still work."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from omoai_core.errors import InvalidInputError
from omoai_gpu.memory import MemoryPolicy
from omoai_llm.backends.base import ChatMessage, ModelSource
from omoai_llm.backends.transformers_backend import TransformersBackend
from prometheus_client import CollectorRegistry

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("one_torch_thread")]


class CountingPolicy(MemoryPolicy):
    entered = 0

    @contextlib.contextmanager
    def inference(self):
        CountingPolicy.entered += 1
        with super().inference():
            yield


def _policy() -> CountingPolicy:
    return CountingPolicy.from_settings("cpu", "fp32", debug_empty_cache=False, registry=CollectorRegistry())


def _msgs(text: str) -> list[ChatMessage]:
    return [ChatMessage("system", "punctuate"), ChatMessage("user", text)]


async def test_concurrent_calls_are_batched_under_the_inference_context(tiny_model: Path):
    b = TransformersBackend.load(str(tiny_model), _policy(), max_batch_size=8, batch_wait_ms=50)
    CountingPolicy.entered = 0
    texts = [f"xin chào các bạn số {i}" + " hôm nay" * i for i in range(8)]
    results = await asyncio.gather(*(b.generate(_msgs(t), max_tokens=5 + i) for i, t in enumerate(texts)))
    assert b.batches_run < len(texts)  # gathered, not one by one
    assert CountingPolicy.entered == b.batches_run  # every forward pass under policy.inference()
    for i, c in enumerate(results):
        assert isinstance(c.text, str) and c.completion_tokens <= 5 + i
        assert c.prompt_tokens == b.count_tokens(b.render(_msgs(texts[i])))
        assert c.finish_reason in ("stop", "length")
    await b.close()


async def test_the_chat_template_is_used_when_present_and_a_plain_format_otherwise(tiny_model, tiny_model_b):
    with_template = TransformersBackend.load(str(tiny_model), _policy())
    assert with_template.render(_msgs("hi")).endswith("<s>assistant\n")
    plain = TransformersBackend.load(str(tiny_model_b), _policy())
    assert not plain.has_chat_template
    assert plain.render(_msgs("hi")).endswith("Assistant:")
    c = await plain.generate(_msgs("xin chào"), max_tokens=4)
    assert c.completion_tokens <= 4
    await with_template.close()
    await plain.close()


async def test_a_prompt_over_the_context_is_refused_and_output_is_capped_by_the_context(tiny_model: Path):
    b = TransformersBackend.load(str(tiny_model), _policy(), ModelSource(context_tokens=64))
    with pytest.raises(InvalidInputError, match="over the context"):
        await b.generate(_msgs("xin chào " * 100), max_tokens=4)
    c = await b.generate(_msgs("xin chào"), max_tokens=10_000)
    assert c.prompt_tokens + c.completion_tokens <= 64
    await b.close()


async def test_calls_after_close_fail_cleanly(tiny_model: Path):
    from omoai_core.errors import UnavailableError

    b = TransformersBackend.load(str(tiny_model), _policy())
    await b.generate(_msgs("xin chào"), max_tokens=2)
    await b.close()
    with pytest.raises(UnavailableError):
        await b.generate(_msgs("xin chào"), max_tokens=2)


async def test_no_cache_clear_per_batch_unless_the_debug_switch_is_on(tiny_model: Path):
    for debug, expected in ((False, 0), (True, 2)):
        policy = MemoryPolicy.from_settings("cpu", "fp32", debug_empty_cache=debug, registry=CollectorRegistry())
        b = TransformersBackend.load(str(tiny_model), policy)
        await b.generate(_msgs("xin chào"), max_tokens=2)
        await b.generate(_msgs("xin chào các bạn"), max_tokens=2)
        assert b.batches_run == 2
        assert policy.clears("debug_per_window") == expected
        assert policy.clears("model_switch") == 0
        await b.close()
