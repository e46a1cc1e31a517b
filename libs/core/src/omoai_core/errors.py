"""The one error vocabulary of OMOAI: a stable ``code``, an HTTP status and a ``retryable`` flag.

Adapters wrap third-party exceptions into these with ``raise ... from e``; HTTP layers render them
with :func:`error_body` so every failure has one shape.
"""

from __future__ import annotations

from typing import Any, ClassVar


class OmoaiError(Exception):
    """Base error: ``code`` is stable (clients switch on it), ``message`` tells what to fix."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return error_body(self.code, self.message, retryable=self.retryable, details=self.details)


def error_body(
    code: str, message: str, *, retryable: bool = False, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON body of every HTTP error response."""
    return {"error": {"code": code, "message": message, "retryable": retryable, "details": details or {}}}


# -- permanent: the caller must change something -------------------------------------------------


class InvalidInputError(OmoaiError):
    code = "invalid_input"
    http_status = 400


class RequestTimeoutError(InvalidInputError):
    """The client sent its request body too slowly (a stalled or slowloris upload)."""

    code = "request_timeout"
    http_status = 408


class ConfigError(OmoaiError):
    """Settings or a model configuration that cannot work; raised at startup."""

    code = "invalid_config"
    http_status = 500


class UnauthorizedError(OmoaiError):
    code = "unauthorized"
    http_status = 401


class NotFoundError(OmoaiError):
    code = "not_found"
    http_status = 404


class PayloadTooLargeError(OmoaiError):
    code = "payload_too_large"
    http_status = 413


class UnsupportedMediaError(OmoaiError):
    code = "unsupported_media"
    http_status = 415


class AudioError(OmoaiError):
    """Audio that cannot be used: empty, corrupt, not audio at all, too short or too long."""

    code = "invalid_audio"
    http_status = 422


class EmptyAudioError(AudioError):
    code = "empty_audio"


class CorruptAudioError(AudioError):
    code = "corrupt_audio"


class NotAudioError(AudioError):
    code = "not_audio"


class AudioTooShortError(AudioError):
    code = "audio_too_short"


class AudioTooLongError(AudioError):
    code = "audio_too_long"


class AudioDecodeTimeoutError(AudioError):
    """ffprobe/ffmpeg ran past their wall-clock limit (a pathological or hostile input)."""

    code = "decode_timeout"


class ModelLoadError(OmoaiError):
    """A model directory or hub id that cannot be loaded (missing files, offline, bad config)."""

    code = "model_load_failed"
    http_status = 500


# -- temporary: the same request may succeed later ----------------------------------------------


class UnavailableError(OmoaiError):
    code = "unavailable"
    http_status = 503
    retryable = True


class OverloadedError(OmoaiError):
    code = "overloaded"
    http_status = 429
    retryable = True

    def __init__(self, message: str, *, retry_after_s: float = 1.0, details: dict[str, Any] | None = None):
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class TimeoutError_(OmoaiError):
    code = "timeout"
    http_status = 504
    retryable = True


class UpstreamError(OmoaiError):
    """A dependency (LLM server, object store, URL) failed in a way that may pass."""

    code = "upstream_error"
    http_status = 502
    retryable = True


# -- the codes, for clients that classify error bodies -------------------------------------------


def codes_of(base: type[OmoaiError]) -> frozenset[str]:
    """The ``code`` of ``base`` and of every subclass defined so far."""
    found = {base.code}
    for sub in base.__subclasses__():
        found |= codes_of(sub)
    return frozenset(found)


#: Audio that cannot be used (empty, corrupt, not audio, too short or too long): the caller must
#: send a different recording, retrying cannot help.
AUDIO_ERROR_CODES: frozenset[str] = codes_of(AudioError)
