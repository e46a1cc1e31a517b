"""The tagger backend: punctuation and casing by a token-classification model (one label per word),
loaded by our own code from two official layouts. See :mod:`omoai_llm.tagger.labels` for what a
label may do and :mod:`omoai_llm.tagger.engine` for loading, windows and batching.

This module is the torch-free seam the HTTP layer sees (an import contract keeps torch and
transformers out of routes, service and serving): the :class:`Tagger` protocol and its result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass
class TagResult:
    words: list[str]
    refused: int = 0  # labels that would have changed a word (never applied)
    windows: int = 0
    rounds: int = 0


class Tagger(Protocol):
    """A loaded tagger (:class:`omoai_llm.tagger.engine.TaggerEngine`)."""

    @property
    def model_name(self) -> str: ...

    async def tag(self, words: Sequence[str]) -> TagResult: ...

    async def close(self) -> None: ...
