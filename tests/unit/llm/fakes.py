"""A fake backend at the Backend seam: answers come from a function of the prompt, tokens are
counted as whitespace words, and concurrency is measured."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from omoai_llm.backends.base import ChatMessage, Completion


def count_words(text: str) -> int:
    return len(text.split())


class FakeBackend:
    def __init__(
        self,
        answer: Callable[[str, str], str] | None = None,
        *,
        name: str = "fake",
        context_tokens: int = 4096,
        delay_s: float = 0.0,
    ) -> None:
        self._answer = answer or (lambda system, user: user)
        self._name = name
        self._context = context_tokens
        self.delay_s = delay_s
        self.calls: list[tuple[str, str, int]] = []
        self.active = 0
        self.max_active = 0
        self.closed = False
        self.schemas: list[dict[str, Any] | None] = []

    @property
    def model_name(self) -> str:
        return self._name

    @property
    def context_tokens(self) -> int:
        return self._context

    def count_tokens(self, text: str) -> int:
        return count_words(text)

    async def generate(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        schema: dict[str, Any] | None = None,
    ) -> Completion:
        assert not self.closed, "generate on a closed backend"
        system = next((m.content for m in messages if m.role == "system"), "")
        user = next(m.content for m in messages if m.role == "user")
        self.calls.append((system, user, max_tokens))
        self.schemas.append(schema)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            text = self._answer(system, user)
        finally:
            self.active -= 1
        return Completion(text, count_words(system) + count_words(user), count_words(text), "stop")

    async def close(self) -> None:
        self.closed = True
