"""Secrets out of logs: URLs lose their ``user:pass@`` and the values of secret query parameters
(presigned signatures, tokens, keys), at the source and once more in the log handler.

:func:`redact_url` is for code that names a URL in a message; :class:`RedactingFilter` sits on the
handler :func:`omoai_core.settings.configure_logging` installs and rewrites every record (third-party
ones too: httpx logs request URLs at INFO, uvicorn's access log writes query strings).
"""

from __future__ import annotations

import logging
import re

REDACTED = "REDACTED"

#: Query parameters whose values are secrets (compared case-insensitively; ``x-amz-*`` as a prefix).
SECRET_PARAMS = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_key",
        "apikey",
        "key",
        "secret",
        "password",
        "passwd",
        "pwd",
        "auth",
        "authorization",
        "signature",
        "sig",
        "credential",
        "credentials",
        "session",
        "sessiontoken",
        "x-api-key",
        "client_secret",
        "code",
    }
)
_SECRET_PREFIXES = ("x-amz-", "x-goog-")

# scheme://user[:pass]@host  ->  scheme://REDACTED@host
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s?#@\"'<>]+)@")
# name=value in a query string (after ? or &, or ; as some servers allow)
_PARAM = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&#\s\"'<>?;]+)=(?P<value>[^&#\s\"'<>;]*)")


def _is_secret(name: str) -> bool:
    n = name.lower()
    return n in SECRET_PARAMS or n.startswith(_SECRET_PREFIXES) or n.endswith(("_token", "_key", "_secret"))


def _param(m: re.Match[str]) -> str:
    if _is_secret(m.group("name")) and m.group("value"):
        return f"{m.group('lead')}{m.group('name')}={REDACTED}"
    return m.group(0)


def redact_text(text: str) -> str:
    """``text`` with every URL credential and secret query value replaced by ``REDACTED``."""
    if "@" in text:
        text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    if "=" in text:
        text = _PARAM.sub(_param, text)
    return text


def redact_url(url: str) -> str:
    """A URL fit for a log line or an error message."""
    return redact_text(url)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and formatted traceback) through :func:`redact_text`."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logged as it is
            return True
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(self._formatter.formatException(record.exc_info))
        return True
