"""The seam every backend implements: chat messages in, a completion with token counts out.

The service above this line (chunking, alignment, parsing, routes) never knows which backend runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None  # "stop", "length" (truncated) or backend specific


@runtime_checkable
class Backend(Protocol):
    """One loaded model. ``generate`` may be called concurrently; the backend batches or serialises."""

    @property
    def model_name(self) -> str: ...

    @property
    def context_tokens(self) -> int:
        """Prompt plus completion tokens the model accepts."""
        ...

    async def generate(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float = 0.0
    ) -> Completion: ...

    def count_tokens(self, text: str) -> int: ...

    async def close(self) -> None:
        """Release the model (threads, engine, client); the object is unusable afterwards."""
        ...


def estimate_tokens(text: str) -> int:
    """A conservative token estimate when no tokenizer is at hand.

    Multilingual BPE vocabularies spend about one token per 3-4 characters of English; older
    ones (Llama 2) split Vietnamese letters with diacritics into bytes. The larger of
    characters / 2.5 and UTF-8 bytes / 3 over-estimates both, which only makes chunks smaller.
    Set ``OMOAI_TOKENIZER`` for exact counts.
    """
    if not text:
        return 0
    return max(1, math.ceil(max(len(text) / 2.5, len(text.encode("utf-8")) / 3)))


def render_plain_prompt(messages: Sequence[ChatMessage]) -> str:
    """Prompt format for tokenizers without a chat template (base models)."""
    parts = []
    for m in messages:
        label = {"system": "System", "user": "User", "assistant": "Assistant"}[m.role]
        parts.append(f"{label}: {m.content.strip()}\n")
    parts.append("Assistant:")
    return "\n".join(parts)
