"""What the task modules share: usage accounting, bounded concurrent model calls, budgets."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from omoai_core.errors import ConfigError

from omoai_llm.backends.base import Backend, ChatMessage, Completion, JsonSchema
from omoai_llm.hygiene import clean_model_text

T = TypeVar("T")
U = TypeVar("U")

#: Temperature of the one retry after an unusable answer (greedy decoding would repeat it).
RETRY_TEMPERATURE = 0.7

#: Tokens a chat template adds around the messages (role markers, special tokens), generously.
TEMPLATE_OVERHEAD = 64


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    truncated_calls: int = 0  # completions stopped by the token limit
    cleaned_chars: int = 0  # control characters and broken sequences removed from answers

    def add(self, c: Completion) -> None:
        self.prompt_tokens += c.prompt_tokens
        self.completion_tokens += c.completion_tokens
        self.calls += 1
        if c.finish_reason == "length":
            self.truncated_calls += 1

    def merge(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.calls += other.calls
        self.truncated_calls += other.truncated_calls
        self.cleaned_chars += other.cleaned_chars


@dataclass
class CallContext:
    """One task's access to the model: the backend, sampling, a concurrency bound and a usage tally."""

    backend: Backend
    temperature: float = 0.0
    concurrency: int = 8
    on_completion: Callable[[str, Completion], None] | None = None
    usage: Usage = field(default_factory=Usage)

    def __post_init__(self) -> None:
        self._sem = asyncio.Semaphore(self.concurrency)

    async def chat(
        self,
        system: str,
        user: str,
        max_tokens: int,
        *,
        temperature: float | None = None,
        schema: JsonSchema | None = None,
    ) -> Completion:
        """One model call; the answer's text is cleaned (:mod:`omoai_llm.hygiene`) before anyone
        reads it. ``schema`` asks the backend to enforce a JSON shape where it can."""
        # ``schema`` is passed only when there is one: backends written before it keep working.
        extra: dict[str, Any] = {"schema": schema} if schema is not None else {}
        async with self._sem:
            c = await self.backend.generate(
                [ChatMessage("system", system), ChatMessage("user", user)],
                max_tokens=max_tokens,
                temperature=self.temperature if temperature is None else temperature,
                **extra,
            )
        text, removed = clean_model_text(c.text)
        if removed or text != c.text:
            c = dataclasses.replace(c, text=text)
        self.usage.add(c)
        self.usage.cleaned_chars += removed
        if self.on_completion is not None:
            self.on_completion(self.backend.model_name, c)
        return c

    def room(self, system: str, max_output: int) -> int:
        """Input tokens that fit next to ``system`` and ``max_output`` generated tokens."""
        room = self.backend.context_tokens - self.backend.count_tokens(system) - TEMPLATE_OVERHEAD - max_output
        if room < 32:
            raise ConfigError(
                f"the context of {self.backend.model_name} ({self.backend.context_tokens} tokens) leaves no room "
                f"for input next to the prompt and {max_output} output tokens; lower the *_MAX_TOKENS settings"
            )
        return room


async def map_concurrently(fn: Callable[[T], Coroutine[Any, Any, U]], items: Sequence[T]) -> list[U]:
    """``fn`` over ``items`` concurrently (bounded by the CallContext semaphore), results in order.

    The first failure cancels the rest (TaskGroup) so a failing upstream does not keep working.
    """
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(fn(item)) for item in items]
    except BaseExceptionGroup as group:
        first = group.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [t.result() for t in tasks]
