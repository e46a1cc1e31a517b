"""Safe fetching of ``audio_url`` inputs: http(s), ``s3://`` and ``file://`` under a root.

Rules, all enforced here and nowhere else:
- only the configured schemes; a redirect may only lead to http or https;
- every host is resolved and refused when any address is private, loopback, link-local,
  multicast, reserved or otherwise not global (unless ``allow_private_addresses`` is on or the
  address is inside ``url_allowed_networks``); the check sits in the connection layer and the
  connection goes to the checked address, so DNS rebinding cannot slip past it, and it runs
  again on every redirect;
- no proxies from the environment (a proxy would hide the real destination);
- downloads stream to a temporary file and stop at ``max_url_bytes``;
- ``file://`` paths are resolved (symlinks included) and must stay under ``file_root``.

``open_url`` yields a local path and removes what it downloaded afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import httpx
from omoai_core.addresses import IPAddress, is_ip, refusal
from omoai_core.errors import (
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    TimeoutError_,
    UpstreamError,
)
from omoai_core.redact import redact_text

from omoai_asr.settings import AsrSettings, IPNetwork

log = logging.getLogger(__name__)

MAX_URL_LENGTH = 8192
_CHUNK = 1 << 16

Resolver = Callable[[str, int], Awaitable[list[str]]]


class UrlNotAllowedError(InvalidInputError):
    """An ``audio_url`` this server refuses to fetch (scheme, address or path)."""

    code = "url_not_allowed"
    http_status = 403


class UrlFetchError(InvalidInputError):
    """The URL answered, but not with a file (HTTP 4xx, a redirect loop, a missing object)."""

    code = "url_fetch_failed"
    http_status = 400


@dataclass(frozen=True)
class FetchPolicy:
    allowed_schemes: frozenset[str]
    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    file_root: Path | None = None
    timeout_s: float = 300.0
    connect_timeout_s: float = 10.0
    max_bytes: int = 2 * 1024**3
    max_redirects: int = 5
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_credentials: tuple[str, str, str | None] | None = None

    @classmethod
    def from_settings(cls, s: AsrSettings) -> FetchPolicy:
        creds = None
        if s.s3_access_key_id is not None and s.s3_secret_access_key is not None:
            token = s.s3_session_token.get_secret_value() if s.s3_session_token else None
            creds = (s.s3_access_key_id.get_secret_value(), s.s3_secret_access_key.get_secret_value(), token)
        return cls(
            allowed_schemes=frozenset(s.url_allowed_schemes),
            allow_private=s.allow_private_addresses,
            allowed_networks=tuple(s.url_allowed_networks),
            file_root=s.file_root,
            timeout_s=s.fetch_timeout_s,
            connect_timeout_s=s.fetch_connect_timeout_s,
            max_bytes=s.max_url_bytes,
            max_redirects=s.max_redirects,
            s3_endpoint_url=s.s3_endpoint_url,
            s3_region=s.s3_region,
            s3_credentials=creds,
        )


# -- addresses ----------------------------------------------------------------------------------


def check_address(address: str, policy: FetchPolicy, host: str) -> IPAddress:
    """The parsed address, or :class:`UrlNotAllowedError` when policy forbids reaching it.

    An IPv6 address that embeds an IPv4 address (NAT64 ``64:ff9b::10.0.0.1``, 6to4, IPv4-mapped or
    -compatible) is judged by that IPv4 address too: on a NAT64 cluster it is where the packets go.
    """
    ip, why = refusal(address, allow_private=policy.allow_private, allowed_networks=policy.allowed_networks)
    if why is not None:
        raise UrlNotAllowedError(
            f"audio_url host {host!r} resolves to {why}, which this server does not fetch from",
            details={"host": host, "address": str(ip)},
        )
    return ip


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UrlFetchError(f"audio_url host {host!r} cannot be resolved: {e.strerror}") from e
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _GuardedBackend:
    """An httpcore network backend that resolves, checks and connects to the checked address."""

    def __init__(self, inner: Any, policy: FetchPolicy, resolver: Resolver) -> None:
        self._inner = inner
        self._policy = policy
        self._resolver = resolver

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, **kwargs: Any) -> Any:
        addresses = [host] if is_ip(host) else await self._resolver(host, port)
        if not addresses:
            raise UrlFetchError(f"audio_url host {host!r} has no addresses")
        checked = [check_address(a, self._policy, host) for a in addresses]  # any bad one refuses the host
        return await self._inner.connect_tcp(str(checked[0]), port, timeout=timeout, **kwargs)

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - never used
        raise UrlNotAllowedError("unix sockets are not fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _transport(policy: FetchPolicy, resolver: Resolver) -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(retries=0)
    # httpx has no public hook for the connection layer; httpcore's pool takes a network backend.
    pool = transport._pool
    pool._network_backend = _GuardedBackend(pool._network_backend, policy, resolver)  # type: ignore[assignment]
    return transport


# -- the entry point ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_url(url: str, policy: FetchPolicy, *, resolver: Resolver = system_resolver) -> AsyncIterator[Path]:
    """A local file with the content of ``url``; temporary downloads are removed on exit."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidInputError("audio_url is empty")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInputError(f"audio_url is longer than {MAX_URL_LENGTH} characters")
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "s3", "file"):
        raise UrlNotAllowedError(
            f"audio_url scheme {scheme or '(none)'!r} is not supported; use "
            + ", ".join(sorted(policy.allowed_schemes)),
            details={"allowed_schemes": sorted(policy.allowed_schemes)},
        )
    if scheme not in policy.allowed_schemes:
        raise UrlNotAllowedError(
            f"audio_url scheme {scheme!r} is disabled on this server; allowed: "
            + ", ".join(sorted(policy.allowed_schemes)),
            details={"allowed_schemes": sorted(policy.allowed_schemes)},
        )
    if scheme == "file":
        yield resolve_file_url(url, policy)
        return
    fd, name = tempfile.mkstemp(prefix="omoai-asr-", suffix=".audio")
    os.close(fd)
    path = Path(name)
    try:
        try:
            async with asyncio.timeout(policy.timeout_s):
                if scheme == "s3":
                    await asyncio.to_thread(_fetch_s3, url, policy, path)
                else:
                    await _fetch_http(url, policy, resolver, path)
        except TimeoutError as e:
            raise TimeoutError_(f"fetching audio_url took longer than {policy.timeout_s:.0f} s") from e
        yield path
    finally:
        path.unlink(missing_ok=True)


# -- file:// ------------------------------------------------------------------------------------


def resolve_file_url(url: str, policy: FetchPolicy) -> Path:
    """The file a ``file://`` URL names, which must exist under ``file_root``.

    ``file:///data/a.wav`` is absolute; ``file://meetings/a.wav`` and ``file:meetings/a.wav`` are
    relative to the root. Percent escapes are decoded before the check, symlinks resolved.
    """
    root = policy.file_root
    if root is None:
        raise UrlNotAllowedError("file:// inputs are disabled on this server (no OMOAI_FILE_ROOT is configured)")
    parts = urlsplit(url)
    netloc, raw = unquote(parts.netloc), unquote(parts.path)
    if "\x00" in netloc + raw:
        raise InvalidInputError("audio_url contains a NUL character")
    if parts.query or parts.fragment:
        raise InvalidInputError("file:// URLs take no query or fragment")
    if netloc in ("", "localhost"):
        candidate = Path(raw) if raw.startswith("/") else root / raw
    else:
        candidate = root / (netloc + raw)
    if len(raw) + len(netloc) > MAX_URL_LENGTH:
        raise InvalidInputError("file:// path is too long")
    root = root.resolve()
    try:
        resolved = candidate.resolve()
        inside = resolved.is_relative_to(root)
        exists = inside and resolved.exists()
        regular = exists and resolved.is_file()
        size = resolved.stat().st_size if regular else 0
    except RuntimeError:  # Python < 3.13: a symlink loop
        raise InvalidInputError("file:// path cannot be resolved (a symbolic link loop)") from None
    except OSError as e:  # ENAMETOOLONG, ELOOP, EACCES...: the client's path, never our directories
        raise InvalidInputError(
            f"file:// path cannot be read: {os.strerror(e.errno) if e.errno else 'invalid path'}"
        ) from None
    if not inside:
        raise UrlNotAllowedError(
            "file:// path is outside the directory this server may read", details={"url": url[:200]}
        )
    if not exists:
        raise NotFoundError(f"no such file under the file root: {resolved.relative_to(root)}")
    if not regular:
        raise InvalidInputError(f"{resolved.relative_to(root)} is not a regular file")
    if size > policy.max_bytes:
        raise PayloadTooLargeError(
            f"the file is {size} bytes; the limit is {policy.max_bytes}", details={"max_bytes": policy.max_bytes}
        )
    return resolved


# -- http(s) ------------------------------------------------------------------------------------


async def _fetch_http(url: str, policy: FetchPolicy, resolver: Resolver, target: Path) -> None:
    timeout = httpx.Timeout(policy.timeout_s, connect=policy.connect_timeout_s)
    async with httpx.AsyncClient(
        transport=_transport(policy, resolver), timeout=timeout, follow_redirects=False, trust_env=False
    ) as client:
        current = url
        for _hop in range(policy.max_redirects + 1):
            parts = urlsplit(current)
            if parts.scheme.lower() not in ("http", "https") or parts.scheme.lower() not in policy.allowed_schemes:
                raise UrlNotAllowedError(
                    f"audio_url redirected to a {parts.scheme or 'relative'}:// URL, which is not followed"
                )
            if not parts.hostname:
                raise InvalidInputError("audio_url has no host")
            try:
                async with client.stream("GET", current, headers={"accept": "audio/*, video/*, */*"}) as resp:
                    if resp.is_redirect:
                        location = resp.headers.get("location")
                        if not location:
                            raise UrlFetchError(f"audio_url answered HTTP {resp.status_code} without a Location")
                        current = urljoin(current, location)
                        continue
                    _check_status(resp.status_code)
                    await _stream_to(resp, policy.max_bytes, target)
                    return
            except (UrlNotAllowedError, UrlFetchError, PayloadTooLargeError, UpstreamError, InvalidInputError):
                raise
            except httpx.TimeoutException as e:
                raise TimeoutError_(f"audio_url timed out: {type(e).__name__}") from e
            except httpx.HTTPError as e:
                raise UpstreamError(f"audio_url could not be fetched: {redact_text(str(e))}") from e
        raise UrlFetchError(f"audio_url redirected more than {policy.max_redirects} times")


def _check_status(status: int) -> None:
    if 200 <= status < 300:
        return
    if status in (404, 410):
        raise UrlFetchError(f"audio_url answered HTTP {status} (not found)", details={"status": status})
    if 400 <= status < 500 and status not in (408, 429):
        raise UrlFetchError(f"audio_url answered HTTP {status}", details={"status": status})
    raise UpstreamError(f"audio_url answered HTTP {status}; retry later", details={"status": status})


async def _stream_to(resp: httpx.Response, limit: int, target: Path) -> None:
    declared = resp.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(
            f"audio_url content is {declared} bytes; the limit is {limit}", details={"max_bytes": limit}
        )
    seen = 0
    with target.open("wb") as fh:
        async for chunk in resp.aiter_bytes(_CHUNK):
            seen += len(chunk)
            if seen > limit:
                raise PayloadTooLargeError(
                    f"audio_url content is over the limit of {limit} bytes", details={"max_bytes": limit}
                )
            fh.write(chunk)


# -- s3:// --------------------------------------------------------------------------------------


def _fetch_s3(url: str, policy: FetchPolicy, target: Path) -> None:
    parts = urlsplit(url)
    bucket, key = parts.netloc, unquote(parts.path.lstrip("/"))
    if not bucket or not key:
        raise InvalidInputError("s3 URLs look like s3://bucket/key")
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError as e:
        raise UrlNotAllowedError("s3:// inputs are not available on this server (boto3 is not installed)") from e
    kwargs: dict[str, Any] = {
        "endpoint_url": policy.s3_endpoint_url,
        "region_name": policy.s3_region,
        "config": Config(
            connect_timeout=policy.connect_timeout_s, read_timeout=policy.timeout_s, retries={"max_attempts": 2}
        ),
    }
    if policy.s3_credentials is not None:
        key_id, secret, token = policy.s3_credentials
        kwargs.update(aws_access_key_id=key_id, aws_secret_access_key=secret, aws_session_token=token)
    client = boto3.session.Session().client("s3", **kwargs)
    try:
        obj = client.get_object(Bucket=bucket, Key=key)
        size = int(obj.get("ContentLength") or 0)
        if size > policy.max_bytes:
            raise PayloadTooLargeError(
                f"s3 object is {size} bytes; the limit is {policy.max_bytes}", details={"max_bytes": policy.max_bytes}
            )
        seen = 0
        with target.open("wb") as fh:
            for chunk in obj["Body"].iter_chunks(_CHUNK):
                seen += len(chunk)
                if seen > policy.max_bytes:
                    raise PayloadTooLargeError(
                        f"s3 object is over the limit of {policy.max_bytes} bytes",
                        details={"max_bytes": policy.max_bytes},
                    )
                fh.write(chunk)
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in ("NoSuchKey", "NoSuchBucket", "404") or status == 404:
            raise NotFoundError(f"s3 object s3://{bucket}/{key} does not exist") from e
        if code in ("AccessDenied", "403") or status == 403:
            raise UrlFetchError(f"access to s3://{bucket}/{key} is denied for this server's credentials") from e
        raise UpstreamError(f"s3 fetch failed: {code or status}") from e
    except BotoCoreError as e:
        raise UpstreamError(f"s3 fetch failed: {e}") from e
