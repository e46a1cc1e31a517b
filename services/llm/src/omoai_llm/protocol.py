"""Request and response models of the HTTP API: the LLM service's contract, which lives in
:mod:`omoai_core.contracts.llm` so that the operator speaks it too without importing this service.
"""

from __future__ import annotations

from omoai_core.contracts.llm import (
    ALL_TASKS,
    AlignmentReport,
    ModelInfo,
    ModelsResponse,
    PostprocessRequest,
    PostprocessResponse,
    PunctuateRequest,
    PunctuateResponse,
    SummarizeRequest,
    SummarizeResponse,
    Task,
    TopicsRequest,
    TopicsResponse,
    Usage,
)

__all__ = [
    "ALL_TASKS",
    "AlignmentReport",
    "ModelInfo",
    "ModelsResponse",
    "PostprocessRequest",
    "PostprocessResponse",
    "PunctuateRequest",
    "PunctuateResponse",
    "SummarizeRequest",
    "SummarizeResponse",
    "Task",
    "TopicsRequest",
    "TopicsResponse",
    "Usage",
]
