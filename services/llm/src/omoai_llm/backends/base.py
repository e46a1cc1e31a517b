"""The seam every backend implements: chat messages in, a completion with token counts out.

The service above this line (chunking, alignment, parsing, routes) never knows which backend runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant"]

#: A JSON Schema (draft 2020-12 subset: object, array, integer, enum) an answer must follow.
JsonSchema = dict[str, Any]


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


@dataclass(frozen=True)
class ModelSource:
    """Where an in-process backend (transformers, vLLM) loads its weights from, and its context."""

    offline: bool = False  # never download: a directory or the local hub cache only
    revision: str | None = None  # hub branch, tag or commit
    trust_remote_code: bool = False
    context_tokens: int | None = None  # unset = the model's own

    @classmethod
    def of(cls, settings: Any) -> ModelSource:
        """From LlmSettings (``offline``, ``revision``, ``trust_remote_code``, ``context_tokens``)."""
        return cls(settings.offline, settings.revision, settings.trust_remote_code, settings.context_tokens)


DEFAULT_SOURCE = ModelSource()


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
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        schema: JsonSchema | None = None,
    ) -> Completion:
        """``schema``: the answer must be JSON of that shape; each backend enforces it where it can
        (vLLM structured outputs, ``response_format`` upstream, a constrained-decoding library
        in-process) and callers parse defensively either way."""
        ...

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


def render_prompt(tokenizer: Any, messages: Sequence[ChatMessage]) -> str:
    """The prompt text of in-process backends: the tokenizer's chat template when it has one, else
    :func:`render_plain_prompt`."""
    if getattr(tokenizer, "chat_template", None):
        text: str = tokenizer.apply_chat_template(
            [m.as_dict() for m in messages], add_generation_prompt=True, tokenize=False
        )
        return text
    return render_plain_prompt(messages)


def check_room(prompt_tokens: int, context_tokens: int, model: str) -> int:
    """Tokens left for the answer after the prompt; a prompt over the context is the caller's error."""
    from omoai_core.errors import InvalidInputError

    room = context_tokens - prompt_tokens
    if room < 1:
        raise InvalidInputError(
            f"the prompt has {prompt_tokens} tokens, over the context of {context_tokens} tokens of {model}"
        )
    return room


def require_model(model: str) -> None:
    from omoai_core.errors import ConfigError

    if not model:
        raise ConfigError("no model configured: set OMOAI_MODEL or --model to a hub id or a directory")


def render_plain_prompt(messages: Sequence[ChatMessage]) -> str:
    """Prompt format for tokenizers without a chat template (base models)."""
    parts = []
    for m in messages:
        label = {"system": "System", "user": "User", "assistant": "Assistant"}[m.role]
        parts.append(f"{label}: {m.content.strip()}\n")
    parts.append("Assistant:")
    return "\n".join(parts)
