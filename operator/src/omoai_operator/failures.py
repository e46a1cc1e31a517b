"""Failed stage attempts in the two-word vocabulary (retryable or permanent) and the reading of a
service's error answer onto it.

OMOAI services answer every failure with ``{"error": {"code", "message", "retryable", ...}}``
(:func:`omoai_core.errors.error_body`): the service knows whether the same request can succeed
later, so its ``retryable`` flag decides, and ``code`` names the reason. Only an answer without
that body (a proxy's 502 page, a gateway timeout) is judged by its HTTP status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omoai_core.errors import AUDIO_ERROR_CODES


@dataclass(frozen=True)
class Failure:
    """A failed stage attempt. ``redo`` names a stage whose stored result is gone and must run again."""

    reason: str
    message: str
    retryable: bool
    retry_after_s: float | None = None
    redo: str | None = None


class StageError(Exception):
    """A failed call, classified. ``failure.retryable`` decides between backoff and Failed."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(f"{failure.reason}: {failure.message}")
        self.failure = failure

    @classmethod
    def permanent(cls, reason: str, message: str) -> StageError:
        return cls(Failure(reason, message, retryable=False))

    @classmethod
    def temporary(
        cls, reason: str, message: str, retry_after_s: float | None = None, *, redo: str | None = None
    ) -> StageError:
        return cls(Failure(reason, message, retryable=True, retry_after_s=retry_after_s, redo=redo))


#: Permanent reasons by HTTP status (what the user has to fix).
_PERMANENT_REASONS = {
    400: "InvalidRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    413: "AudioTooLarge",
    415: "UnsupportedMedia",
    422: "InvalidAudio",
}


@dataclass(frozen=True)
class ErrorAnswer:
    """What a service said when it refused or failed a request."""

    status: int
    detail: str
    code: str | None = None
    retryable: bool | None = None  # None: the body did not say (not an OMOAI error body)
    retry_after_s: float | None = None


def read_error_body(body: Any) -> tuple[str | None, bool | None, str | None]:
    """``(code, retryable, message)`` of an OMOAI error body; ``None`` for what it does not hold."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return None, None, None
    code = err.get("code")
    retryable = err.get("retryable")
    message = err.get("message") or code
    return (
        code if isinstance(code, str) else None,
        retryable if isinstance(retryable, bool) else None,
        str(message) if message is not None else None,
    )


def classify(where: str, answer: ErrorAnswer) -> StageError:
    """The failure an error answer means. ``where`` says who answered (``ASR service /v1/... answered 500``)."""
    status, code = answer.status, answer.code
    retryable = answer.retryable
    if retryable is None:
        retryable = status == 429 or status == 408 or status >= 500
    if status == 429:
        reason = "ServiceOverloaded"
    elif status in (502, 503, 504):
        reason = "ServiceUnavailable"
    elif status >= 500 or status == 408:
        reason = "ServiceError"
    elif code in AUDIO_ERROR_CODES:
        reason = "InvalidAudio"
    else:
        reason = _PERMANENT_REASONS.get(status, "Rejected")
    if retryable:
        return StageError.temporary(reason, f"{where}: {answer.detail}", answer.retry_after_s)
    suffix = f" ({code})" if code else ""
    return StageError.permanent(reason, f"{where}{suffix}: {answer.detail}")
