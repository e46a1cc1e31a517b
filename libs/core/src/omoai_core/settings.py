"""Settings base on pydantic-settings: every value from ``OMOAI_*`` environment variables, validated
once at startup, with errors that name the variable to fix and defaults that are safe to expose.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from omoai_core.errors import ConfigError
from omoai_core.redact import RedactingFilter

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def parse_switch(value: Any) -> bool:
    """Accept exactly true/false/1/0/yes/no (any case); anything else is an error, never a guess."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
    raise ValueError(f"expected one of true/false/1/0/yes/no, got {value!r}")


Switch = Annotated[bool, BeforeValidator(parse_switch)]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class OmoaiSettings(BaseSettings):
    """What every OMOAI process shares. Subclasses add their own fields under the same prefix."""

    model_config = SettingsConfigDict(env_prefix="OMOAI_", extra="ignore", frozen=True, validate_default=True)

    debug_empty_cache: Switch = Field(
        default=False,
        description="Turn per-window torch.cuda.empty_cache() back on (troubleshooting only; slow).",
    )
    log_level: LogLevel = Field(default="INFO", description="Log level of the omoai loggers.")
    log_format: Literal["text", "json"] = Field(default="text", description="json in the cluster.")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class InferenceSettings(OmoaiSettings):
    """Device and autocast dtype of a GPU service (see ``omoai_gpu.memory``)."""

    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N.")
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        default="auto", description="Autocast dtype; auto is bf16/fp16 on CUDA and fp32 on CPU."
    )

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        v = v.strip().lower()
        if v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
        raise ValueError(f"expected auto, cpu, cuda or cuda:N, got {v!r}")


class ServerSettings(OmoaiSettings):
    """HTTP serving knobs shared by the services; defaults are the safe ones."""

    host: str = Field(default="127.0.0.1", description="Bind address (the chart sets 0.0.0.0 in pods).")
    port: int = Field(default=8000, ge=1, le=65535, description="TCP port to listen on.")
    api_token: SecretStr | None = Field(default=None, description="Bearer token; unset = no auth.")
    api_token_file: Path | None = Field(default=None, description="File holding the token (a mounted Secret).")
    cors_origins: list[str] = Field(default_factory=list, description="Allowed CORS origins; empty = CORS off.")
    max_request_bytes: int = Field(default=512 * 1024 * 1024, gt=0, description="Largest request body.")
    request_timeout_s: float = Field(default=3600.0, gt=0, description="Wall-clock limit of one request.")
    max_queue: int = Field(default=64, ge=1, description="Requests waiting beyond this get 429.")
    max_concurrency: int = Field(default=4, ge=1, description="Requests worked on at once.")
    max_header_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest request head (request line and headers); larger gets 400."
    )
    header_timeout_s: float = Field(
        default=30.0, gt=0, description="Time a client has to send a request's headers, else 408 and close."
    )
    keep_alive_timeout_s: float = Field(default=5.0, gt=0, description="Idle kept-alive connections close after this.")
    body_read_timeout_s: float = Field(
        default=60.0, gt=0, description="Longest wait for the next piece of a request body, else 408."
    )
    body_timeout_s: float = Field(default=900.0, gt=0, description="Time the whole request body may take, else 408.")
    api_docs: Switch = Field(
        default=True, description="Serve /docs, /redoc and /openapi.json (behind the token when one is set)."
    )
    shutdown_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="After SIGTERM: longest wait for in-flight requests (new ones get 503); the chart "
        "derives it from terminationGracePeriodSeconds.",
    )

    @field_validator("cors_origins")
    @classmethod
    def _strip_origins(cls, v: list[str]) -> list[str]:
        return [o.strip() for o in v if o.strip()]

    @model_validator(mode="after")
    def _token_sources(self) -> ServerSettings:
        if self.api_token is not None and self.api_token_file is not None:
            raise ValueError("set OMOAI_API_TOKEN or OMOAI_API_TOKEN_FILE, not both")
        if self.api_token is not None and len(self.api_token.get_secret_value()) < 16:
            raise ValueError("OMOAI_API_TOKEN must be at least 16 characters")
        return self

    def resolved_token(self) -> str | None:
        """The bearer token, read from the mounted file when one is configured."""
        if self.api_token is not None:
            return self.api_token.get_secret_value()
        if self.api_token_file is not None:
            try:
                token = self.api_token_file.read_text(encoding="utf-8").strip()
            except OSError as e:
                raise ConfigError(f"cannot read OMOAI_API_TOKEN_FILE {self.api_token_file}: {e}") from e
            if len(token) < 16:
                raise ConfigError(f"the token in {self.api_token_file} must be at least 16 characters")
            return token
        return None


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings once (environment, then explicit overrides such as CLI flags).

    A validation failure becomes one :class:`ConfigError` listing each bad variable and why.
    """
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return cls(**clean)
    except SettingsError as e:  # e.g. a list variable that is not valid JSON
        raise ConfigError(f"invalid configuration: {e}") from e
    except ValidationError as e:
        prefix = cls.model_config.get("env_prefix", "") or ""
        lines = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(settings)"
            var = f"{prefix}{loc}".upper() if err["loc"] else "(settings)"
            lines.append(f"  {var}: {err['msg']} (got {err.get('input')!r})" if err["loc"] else f"  {err['msg']}")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from e


def configure_logging(settings: OmoaiSettings) -> None:
    """One handler on the root logger; JSON lines when ``log_format=json``."""
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())  # no URL credential or query secret reaches a log line
    if settings.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        import json

        payload = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            payload["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)
