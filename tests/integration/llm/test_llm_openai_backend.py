"""The openai backend against a real HTTP server on loopback that speaks the OpenAI chat API:
adversarial answers, retries on 429/5xx with backoff, timeouts, permanent errors, and the whole
service on top of it."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from omoai_core.errors import InvalidInputError, ModelLoadError, TimeoutError_, UpstreamError
from omoai_core.settings import load_settings
from omoai_llm.app import create_app
from omoai_llm.backends.base import ChatMessage
from omoai_llm.backends.openai_backend import OpenAIBackend
from omoai_llm.settings import LlmSettings

pytestmark = pytest.mark.timeout(180)

MODEL = "upstream-model"
MESSAGES = [ChatMessage("system", "s"), ChatMessage("user", "xin chào các bạn")]


def _completion(text: str, usage: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "cmpl-1",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    return body


def _default_answer(system: str, user: str) -> str:
    """Like a chatty, sloppy model: preamble, a dropped word, an invented one, fenced JSON."""
    if "dấu câu" in system or "punctuation" in system:
        words = user.split()
        kept = [w for i, w in enumerate(words) if i != 1]  # drops the second word
        return "Đây là văn bản:\n" + " ".join(kept).capitalize() + " nhé, à." + "\n\nHy vọng hữu ích!"
    if "[n]" in system:
        first = re.search(r"^\[(\d+)\]", user, re.MULTILINE)
        return f'```json\n[{{"segment": {first.group(1) if first else 1}, "title": "Mở đầu",}}]\n```'
    return '```json\n{"title": "Tóm tắt", "abstract": "Một cuộc họp.", "bullets": ["ý một", "ý hai",],}\n```'


class FakeOpenAI:
    """A scripted OpenAI-compatible server: each request takes the next scripted action."""

    def __init__(self) -> None:
        self.script: deque[tuple[str, Any]] = deque()
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.models: list[dict[str, Any]] = [{"id": MODEL, "object": "model", "max_model_len": 4096}]
        self.app = FastAPI()

        @self.app.get("/v1/models")
        async def models(request: Request):
            if request.headers.get("authorization") == "Bearer revoked-key":
                return JSONResponse({"error": {"message": "invalid key"}}, status_code=401)
            return {"object": "list", "data": self.models}

        @self.app.post("/v1/chat/completions")
        async def chat(request: Request):
            body = await request.json()
            self.requests.append(body)
            self.auth.append(request.headers.get("authorization"))
            action, arg = self.script.popleft() if self.script else ("answer", None)
            if action == "status":
                status, headers = arg
                return JSONResponse({"error": {"message": f"scripted {status}"}}, status_code=status, headers=headers)
            if action == "sleep":
                await asyncio.sleep(arg)
            if action == "malformed":
                return PlainTextResponse("this is not json", status_code=200)
            if action == "text":
                return JSONResponse(_completion(arg, usage=False))
            msgs = body["messages"]
            system = next((m["content"] for m in msgs if m["role"] == "system"), "")
            user = next(m["content"] for m in msgs if m["role"] == "user")
            return JSONResponse(_completion(_default_answer(system, user)))


@pytest.fixture(scope="module")
def upstream(servers):
    fake = FakeOpenAI()
    with servers.thread(fake.app) as url:
        fake.url = url + "/v1"
        yield fake


@pytest.fixture(autouse=True)
def _reset(upstream: FakeOpenAI):
    upstream.script.clear()
    upstream.requests.clear()
    upstream.auth.clear()
    yield


def _backend(upstream: FakeOpenAI, **kw: Any) -> OpenAIBackend:
    kw.setdefault("retries", 3)
    kw.setdefault("backoff_s", 0.01)
    return OpenAIBackend(MODEL, upstream.url, **kw)


async def test_5xx_then_success_is_retried(upstream: FakeOpenAI):
    upstream.script.extend([("status", (500, {})), ("status", (503, {})), ("status", (502, {}))])
    b = _backend(upstream, api_key="sk-upstream-key")
    c = await b.generate(MESSAGES, max_tokens=32)
    await b.close()
    assert c.text.startswith("Đây là") or c.text  # the real answer after three failures
    assert len(upstream.requests) == 4 and b.calls == 4
    assert upstream.auth[-1] == "Bearer sk-upstream-key"
    assert (c.prompt_tokens, c.completion_tokens) == (11, 7)  # the server's usage numbers
    assert upstream.requests[0]["model"] == MODEL and upstream.requests[0]["max_tokens"] == 32


async def test_429_honours_retry_after(upstream: FakeOpenAI):
    upstream.script.append(("status", (429, {"Retry-After": "1"})))
    b = _backend(upstream)
    started = time.monotonic()
    await b.generate(MESSAGES, max_tokens=8)
    await b.close()
    assert time.monotonic() - started >= 0.9 and len(upstream.requests) == 2


async def test_retries_are_bounded_and_the_error_is_retryable(upstream: FakeOpenAI):
    upstream.script.extend([("status", (500, {}))] * 5)
    b = _backend(upstream, retries=2)
    with pytest.raises(UpstreamError) as err:
        await b.generate(MESSAGES, max_tokens=8)
    await b.close()
    assert len(upstream.requests) == 3 and err.value.retryable
    assert "500" in err.value.message and "3 attempt" in err.value.message


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [(401, UpstreamError, False), (404, UpstreamError, False), (400, InvalidInputError, False)],
)
async def test_permanent_errors_are_not_retried(upstream: FakeOpenAI, status: int, error: type, retryable: bool):
    upstream.script.append(("status", (status, {})))
    b = _backend(upstream)
    with pytest.raises(error) as err:
        await b.generate(MESSAGES, max_tokens=8)
    await b.close()
    assert len(upstream.requests) == 1 and err.value.retryable is retryable


async def test_a_slow_server_times_out_after_retries(upstream: FakeOpenAI):
    upstream.script.extend([("sleep", 2.0), ("sleep", 2.0)])
    b = _backend(upstream, timeout_s=0.3, retries=1)
    with pytest.raises(TimeoutError_):
        await b.generate(MESSAGES, max_tokens=8)
    await b.close()
    assert len(upstream.requests) == 2


async def test_an_unreachable_server_is_a_retryable_upstream_error(servers):
    b = OpenAIBackend(MODEL, f"http://127.0.0.1:{servers.free_port()}/v1", retries=1, backoff_s=0.01)
    with pytest.raises(UpstreamError) as err:
        await b.generate(MESSAGES, max_tokens=8)
    await b.close()
    assert err.value.retryable and b.calls == 2


async def test_malformed_answers_are_upstream_errors_and_missing_usage_is_estimated(upstream: FakeOpenAI):
    upstream.script.extend([("malformed", None), ("text", "Xin chào các bạn.")])
    b = _backend(upstream)
    with pytest.raises(UpstreamError, match="malformed"):
        await b.generate(MESSAGES, max_tokens=8)
    c = await b.generate(MESSAGES, max_tokens=8)
    await b.close()
    assert c.text == "Xin chào các bạn." and c.prompt_tokens > 0 and c.completion_tokens > 0


async def test_startup_check_refuses_a_model_the_server_does_not_serve(upstream: FakeOpenAI):
    b = OpenAIBackend("other-model", upstream.url)
    with pytest.raises(ModelLoadError, match="does not serve model 'other-model'"):
        await b.check()
    await b.close()
    revoked = _backend(upstream, api_key="revoked-key")
    with pytest.raises(ModelLoadError, match="refused our credentials"):
        await revoked.check()
    await revoked.close()
    ok = _backend(upstream)
    await ok.check()
    assert ok.context_tokens == 4096  # vLLM's max_model_len is picked up
    await ok.close()


def _segments(texts: list[str]) -> list[dict[str, Any]]:
    return [{"text": t, "start": 2.0 * i, "end": 2.0 * i + 1.5} for i, t in enumerate(texts)]


TEXTS = ["xin chào các bạn hôm nay", "chúng ta nói về ngân sách", "và kế hoạch năm tới"]


def test_the_service_on_the_openai_backend_survives_a_sloppy_model(upstream: FakeOpenAI, servers, monkeypatch):
    monkeypatch.setenv("OMOAI_OPENAI_API_KEY", "sk-upstream-key")
    settings = load_settings(
        LlmSettings,
        backend="openai",
        model=MODEL,
        openai_base_url=upstream.url,
        openai_backoff_s=0.01,
        device="cpu",
        punct_chunk_tokens=16,
    )
    upstream.script.append(("status", (503, {})))  # the first call fails once: retried transparently
    with servers.thread(create_app(settings)) as url:
        r = httpx.post(f"{url}/v1/postprocess", json={"segments": _segments(TEXTS)}, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        for before, after in zip(TEXTS, body["segments"], strict=True):
            assert [re.sub(r"\W", "", w).lower() for w in after["text"].split()] == before.split()
        assert body["segments"][0]["text"].startswith("Xin")
        assert [(s["start"], s["end"]) for s in body["segments"]] == [(0.0, 1.5), (2.0, 3.5), (4.0, 5.5)]
        assert body["alignment"]["restored"] >= 1 and body["alignment"]["invented"] >= 1
        assert body["quality"]["wer"] == 0
        assert body["summary"] == {"title": "Tóm tắt", "abstract": "Một cuộc họp.", "bullets": ["ý một", "ý hai"]}
        assert body["topics"][0]["title"] == "Mở đầu" and body["topics"][0]["start"] == 0.0
        metrics = httpx.get(f"{url}/metrics").text
    assert body["usage"]["punctuate"]["calls"] >= 2  # 16-token chunks: several calls
    assert upstream.auth and all(a == "Bearer sk-upstream-key" for a in upstream.auth)
    assert re.search(
        r'omoai_llm_tokens_total\{direction="prompt",model="upstream-model",task="[a-z]+"\} [1-9]', metrics
    )
    sent = [json.dumps(r) for r in upstream.requests]
    assert all('"stream": false' in s for s in sent)
