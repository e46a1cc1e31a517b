"""Any OpenAI-compatible chat server (a separate vLLM deployment, TGI, llama.cpp, a hosted API).

Each call has a timeout; 429, 5xx, timeouts and connection errors are retried with exponential
backoff (honouring ``Retry-After``); other 4xx answers are permanent and reported as such.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from omoai_core.errors import InvalidInputError, ModelLoadError, TimeoutError_, UpstreamError

from omoai_llm.backends.base import ChatMessage, Completion, JsonSchema, estimate_tokens

log = logging.getLogger(__name__)


class UpstreamRejectedError(UpstreamError):
    """The LLM server refused us for good (bad key, unknown model): retrying cannot help."""

    code = "upstream_rejected"
    retryable = False


_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_MAX_DELAY_S = 30.0


class OpenAIBackend:
    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        context_tokens: int | None = None,
        counter: Callable[[str], int] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._name = model
        self._retries = retries
        self._backoff = backoff_s
        self._context = context_tokens or 8192
        self._counter = counter or estimate_tokens
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            transport=transport,
        )
        self.calls = 0  # HTTP attempts, retries included (diagnostics, tests)

    async def check(self) -> None:
        """Startup check: the server answers ``GET /models`` and serves our model.

        An unreachable server is only logged (it may start after us; calls retry and fail with a
        retryable 502); a server that answers without our model is a configuration error.
        """
        try:
            r = await self._client.get("models")
        except httpx.HTTPError as e:
            log.warning("openai server %s not reachable at startup: %s", self._client.base_url, e)
            return
        if r.status_code in (401, 403):
            raise ModelLoadError(
                f"the openai server at {self._client.base_url} refused our credentials ({r.status_code}); "
                "check OMOAI_OPENAI_API_KEY",
                details={"model": self._name, "upstream_status": r.status_code},
            )
        if r.status_code != 200:
            log.warning("openai server %s answered GET /models with %d", self._client.base_url, r.status_code)
            return
        try:
            data = r.json().get("data", [])
            ids = {m.get("id") for m in data if isinstance(m, dict)}
        except (ValueError, AttributeError):
            return
        if ids and self._name not in ids:
            raise ModelLoadError(
                f"the openai server at {self._client.base_url} does not serve model {self._name!r} "
                f"(it serves: {', '.join(sorted(str(i) for i in ids))})",
                details={"model": self._name},
            )
        for m in data:
            if isinstance(m, dict) and m.get("id") == self._name and isinstance(m.get("max_model_len"), int):
                self._context = m["max_model_len"]  # vLLM reports its context window

    @property
    def model_name(self) -> str:
        return self._name

    @property
    def context_tokens(self) -> int:
        return self._context

    def count_tokens(self, text: str) -> int:
        return self._counter(text)

    async def generate(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        schema: JsonSchema | None = None,
    ) -> Completion:
        body: dict[str, Any] = {
            "model": self._name,
            "messages": [m.as_dict() for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": False,
        }
        if schema is not None:  # OpenAI's structured outputs; vLLM, SGLang and llama.cpp accept it too
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": True},
            }
        attempt = 0
        while True:
            self.calls += 1
            delay: float | None = None
            try:
                r = await self._client.post("chat/completions", json=body)
            except httpx.TimeoutException as e:
                if attempt >= self._retries:
                    raise TimeoutError_(f"the LLM server timed out after {attempt + 1} attempts") from e
                reason = f"timeout ({e.__class__.__name__})"
            except httpx.HTTPError as e:
                if attempt >= self._retries:
                    raise UpstreamError(
                        f"cannot reach the LLM server after {attempt + 1} attempts: {e.__class__.__name__}: {e}"
                    ) from e
                reason = f"{e.__class__.__name__}"
            else:
                if r.status_code == 200:
                    return self._parse(r, messages)
                if r.status_code not in _RETRY_STATUS or attempt >= self._retries:
                    raise self._http_error(r, attempt + 1)
                reason = f"HTTP {r.status_code}"
                delay = _retry_after(r)
            attempt += 1
            if delay is None:
                delay = self._backoff * (2 ** (attempt - 1)) * (0.75 + random.random() / 2)
            delay = min(delay, _MAX_DELAY_S)
            log.info("LLM call failed (%s); retry %d/%d in %.2fs", reason, attempt, self._retries, delay)
            await asyncio.sleep(delay)

    async def close(self) -> None:
        await self._client.aclose()

    # -- helpers ----------------------------------------------------------------------------------

    def _parse(self, r: httpx.Response, messages: Sequence[ChatMessage]) -> Completion:
        try:
            data = r.json()
            choice = data["choices"][0]
            msg = choice.get("message") or {}
            text = msg.get("content")
            if text is None:
                text = choice.get("text") or ""
            if not isinstance(text, str):
                raise TypeError(f"content is {type(text).__name__}")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            raise UpstreamError(f"the LLM server sent a malformed chat completion: {e}") from e
        usage = data.get("usage") or {}
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        if not isinstance(prompt_tokens, int):
            prompt_tokens = sum(self.count_tokens(m.content) for m in messages)
        if not isinstance(completion_tokens, int):
            completion_tokens = self.count_tokens(text)
        return Completion(text, prompt_tokens, completion_tokens, choice.get("finish_reason"))

    def _http_error(self, r: httpx.Response, attempts: int) -> Exception:
        try:
            detail: Any = r.json()
            detail = detail.get("error", detail) if isinstance(detail, dict) else detail
            if isinstance(detail, dict):
                detail = detail.get("message", detail)
        except ValueError:
            detail = r.text[:500]
        msg = f"the LLM server answered {r.status_code} after {attempts} attempt(s): {detail}"
        if r.status_code == 400:
            # Typically a prompt over the server's context; the request's content is what to change.
            return InvalidInputError(msg, details={"upstream_status": 400})
        if r.status_code in (401, 403, 404, 422):
            return UpstreamRejectedError(msg, details={"upstream_status": r.status_code})
        return UpstreamError(msg, details={"upstream_status": r.status_code})


def _retry_after(r: httpx.Response) -> float | None:
    value = r.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
