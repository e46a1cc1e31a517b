"""Webhook delivery I/O: checking a job's ``spec.notifications`` before it runs
(:meth:`Notifier.check`), and one signed POST (:meth:`Notifier.send`).

Every host is judged by the same address rule as audio URLs (:mod:`omoai_core.addresses`): private,
loopback and link-local addresses are refused unless ``OMOAI_ALLOW_PRIVATE_ADDRESSES`` or
``OMOAI_URL_ALLOWED_NETWORKS`` allow them. The check runs in aiohttp's resolver, on the addresses
the connection then uses, so a DNS answer that changes between check and connect cannot slip past.
Redirects are not followed. Signing keys are read at each attempt (a rotated Secret is picked up)
and never appear in a message, a log line or the status.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from omoai_core.addresses import IPNetwork, is_ip, refusal
from omoai_core.errors import InvalidInputError

from omoai_operator import webhooks
from omoai_operator.deliveries import Attempt, RetryPolicy, retry_after
from omoai_operator.failures import StageError
from omoai_operator.locations import SecretReader
from omoai_operator.spec import JobSpec, Notification
from omoai_operator.status import Delivery, JobStatus

log = logging.getLogger(__name__)


class AddressRefused(Exception):
    """A notification host resolved to an address the rule forbids."""


@dataclass(frozen=True)
class AddressGuard:
    allow_http: bool = False
    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    def check_address(self, address: str, host: str) -> None:
        _, why = refusal(address, allow_private=self.allow_private, allowed_networks=self.allowed_networks)
        if why is not None:
            raise AddressRefused(
                f"notification host {host!r} resolves to {why}, which the operator does not send to "
                "(OMOAI_ALLOW_PRIVATE_ADDRESSES or OMOAI_URL_ALLOWED_NETWORKS allow it)"
            )

    def check_url(self, url: str, where: str) -> None:
        """The static part of the rule (scheme; a literal address), as :class:`InvalidInputError`."""
        parts = urlsplit(url)
        if parts.scheme == "http" and not self.allow_http:
            raise InvalidInputError(
                f"{where}: {parts.scheme}:// is refused; use https (or set OMOAI_NOTIFY_ALLOW_HTTP)"
            )
        host = parts.hostname or ""
        if is_ip(host):
            try:
                self.check_address(host, host)
            except AddressRefused as e:
                raise InvalidInputError(f"{where}: {e}") from None


class _GuardedResolver(AbstractResolver):
    """aiohttp's threaded resolver, then the address rule on every answer."""

    def __init__(self, guard: AddressGuard) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        for a in answers:
            self._guard.check_address(a["host"], host)
        return answers

    async def close(self) -> None:
        await self._inner.close()


def _secret_name(endpoint: Notification, where: str) -> str:
    return f"{where}.secretRef ({endpoint.secret_ref.name}/{endpoint.secret_ref.key})"


class Notifier:
    """Shared by all jobs of a process: the policy, the address rule, one connection pool."""

    def __init__(self, policy: RetryPolicy, guard: AddressGuard, read_secret: SecretReader | None) -> None:
        self.policy = policy
        self.guard = guard
        self.read_secret = read_secret
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=_GuardedResolver(self.guard), limit=100),
                trust_env=False,  # a proxy would hide where the request really goes
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def keys(self, endpoint: Notification, namespace: str, where: str) -> list[bytes]:
        """The signing keys of an endpoint; :class:`StageError` when the Secret cannot be read or
        holds none (the message names the Secret and key, never a value)."""
        if self.read_secret is None:
            raise StageError.permanent(
                "SecretNotFound", f"{_secret_name(endpoint, where)}: no way to read Secrets here"
            )
        data = await self.read_secret(namespace, endpoint.secret_ref.name)
        raw = data.get(endpoint.secret_ref.key)
        if not raw:
            raise StageError.permanent(
                "InvalidSecret",
                f"{_secret_name(endpoint, where)}: Secret {endpoint.secret_ref.name!r} has no key "
                f"{endpoint.secret_ref.key!r}",
            )
        try:
            return webhooks.signing_keys(raw, _secret_name(endpoint, where))
        except webhooks.KeyError_ as e:
            raise StageError.permanent("InvalidSecret", str(e)) from None

    async def check(self, spec: JobSpec, namespace: str) -> None:
        """Refuse a job whose notifications cannot work, before anything runs: a URL the rule
        forbids, a missing Secret or key, a key that is not ``whsec_...``. Raises InvalidInputError."""
        for i, endpoint in enumerate(spec.notifications):
            where = f"spec.notifications[{i}]"
            self.guard.check_url(endpoint.url, f"{where}.url")
            try:
                await self.keys(endpoint, namespace, where)
            except StageError as e:
                raise InvalidInputError(e.failure.message) from None

    async def send(
        self, endpoint: Notification, delivery: Delivery, job: webhooks.JobIdentity, status: JobStatus, now: dt.datetime
    ) -> Attempt:
        """One attempt; never raises for what the network or the receiver does."""
        t0 = time.monotonic()
        where = f"spec.notifications[{delivery.endpoint}]"
        try:
            keys = await self.keys(endpoint, job.namespace, where)
        except StageError as e:
            # A Secret may be (re)created later: retried within the window like a receiver outage.
            return Attempt(None, e.failure.message, duration_s=time.monotonic() - t0)
        except Exception as e:  # noqa: BLE001 - the API server unreachable for a moment: retried too
            why = f"{where}.secretRef: cannot read the Secret ({type(e).__name__})"
            return Attempt(None, why, duration_s=time.monotonic() - t0)
        message = webhooks.build(endpoint, delivery, job, status, keys, now)
        try:
            self.guard.check_url(endpoint.url, f"{where}.url")
            timeout = aiohttp.ClientTimeout(total=self.policy.timeout_s)
            async with self._client().post(
                endpoint.url, data=message.body, headers=message.headers, timeout=timeout, allow_redirects=False
            ) as resp:
                await resp.read()
                return Attempt(
                    resp.status,
                    None if resp.status < 300 else f"HTTP {resp.status}",
                    retry_after(resp.headers.get("retry-after"), now),
                    duration_s=time.monotonic() - t0,
                )
        except (AddressRefused, InvalidInputError) as e:
            return Attempt(None, str(e), permanent=True, duration_s=time.monotonic() - t0)
        except TimeoutError:
            return Attempt(None, f"no answer within {self.policy.timeout_s:g}s", duration_s=time.monotonic() - t0)
        except aiohttp.ClientError as e:
            cause = e.__cause__ or e.__context__
            if isinstance(cause, AddressRefused):
                return Attempt(None, str(cause), permanent=True, duration_s=time.monotonic() - t0)
            return Attempt(None, f"{type(e).__name__}: {e}"[:300], duration_s=time.monotonic() - t0)
        except OSError as e:
            return Attempt(None, f"{type(e).__name__}: {e}"[:300], duration_s=time.monotonic() - t0)
