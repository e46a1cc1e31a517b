"""The HTTP contracts between OMOAI components, in one torch-free place that every side imports:
:mod:`~omoai_core.contracts.asr` (``POST /v1/transcriptions``), :mod:`~omoai_core.contracts.llm`
(``/v1/punctuate``, ``/v1/summarize``, ``/v1/topics``, ``/v1/postprocess``), and here the values
both ends must agree on: the output formats and what a language tag means.

The services parse requests with these models and build their answers with them; the operator
builds its requests with them and reads the answers through them. The payload shapes themselves
(Transcript, Segment, Summary, ...) are :mod:`omoai_core.schemas`.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

from omoai_core.errors import InvalidInputError

#: The output formats every writer, the ASR API and the TranscriptionJob spec know.
OutputFormat = Literal["json", "txt", "srt", "vtt", "md"]
FORMATS: tuple[OutputFormat, ...] = get_args(OutputFormat)


class InvalidLanguageError(InvalidInputError, ValueError):
    """A language tag that is not one (also a ``ValueError``, so settings validators report it)."""


def primary_language(tag: str) -> str:
    """The primary subtag of a language tag, lower case: ``vi-VN``, ``VI_vn`` and ``vi`` are ``vi``."""
    raw = tag.strip()
    lang = raw.lower().replace("_", "-").split("-")[0]
    if not re.fullmatch(r"[a-z]{2,3}", lang):
        raise InvalidLanguageError(f"invalid language {raw!r}: expected a code such as vi, en or vi-VN")
    return lang


__all__ = ["FORMATS", "InvalidLanguageError", "OutputFormat", "primary_language"]
