"""A small Kubernetes API client (aiohttp, as kopf itself uses) for what kopf's handler patches
cannot do from a long-running daemon: patch ``/status`` at every transition, read a Secret, delete
an expired job.

It authenticates with the same :class:`kopf.ConnectionInfo` the operator logged in with.
"""

from __future__ import annotations

import base64
import json as _json
import logging
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import kopf

from omoai_operator.failures import StageError
from omoai_operator.spec import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)


#: Where Kubernetes projects the pod's service-account token (rotated by the kubelet).
SA_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class DiscoveryUnavailable(Exception):
    """The API server will not list or watch a collection (forbidden, no such API): the caller
    falls back (for the services' endpoints, to the Service URL)."""


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def _as_file(data: str | bytes, suffix: str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    try:
        raw = base64.b64decode(raw, validate=True)
    except ValueError:
        pass
    f = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)  # noqa: SIM115 - must outlive the context
    f.write(raw)
    f.close()
    return f.name


def _tls(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    if not info.server.startswith("https"):
        return True
    ctx = ssl.create_default_context(cafile=str(info.ca_path) if info.ca_path else None)
    if info.ca_data:
        ctx.load_verify_locations(cafile=_as_file(info.ca_data, ".crt"))
    cert = info.certificate_path or (info.certificate_data and _as_file(info.certificate_data, ".crt"))
    key = info.private_key_path or (info.private_key_data and _as_file(info.private_key_data, ".key"))
    if cert:
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    return ctx


class KubeClient:
    """aiohttp (kopf's own HTTP stack) rather than httpx here: status writes are the operator's
    hottest path, and aiohttp's client costs about half as much CPU per request."""

    def __init__(self, info: kopf.ConnectionInfo, *, timeout_s: float = 30.0) -> None:
        self._base = info.server.rstrip("/")
        self._headers = {"Authorization": f"{info.scheme or 'Bearer'} {info.token}"} if info.token else {}
        self._auth = aiohttp.BasicAuth(info.username, info.password or "") if info.username else None
        self._ssl = _tls(info)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the operator's event loop (login may run in a thread).
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                auth=self._auth,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=16, ssl=self._ssl),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    @staticmethod
    def job_path(namespace: str, name: str) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"

    async def _request(
        self, method: str, path: str, *, parse: bool = True, json: Any = None, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        for attempt in (1, 2):
            async with self._client().request(method, self._base + path, json=json, headers=headers) as resp:
                body = await resp.read()
                status = resp.status
            if status == 401 and attempt == 1 and self._reload_token():
                continue  # a projected service-account token rotated under us
            break
        if status >= 400:
            try:
                message = _json.loads(body).get("message", body.decode(errors="replace"))
            except ValueError:
                message = body.decode(errors="replace")
            raise KubeError(status, str(message)[:500])
        return _json.loads(body) if parse and body else {}

    def _reload_token(self) -> bool:
        try:
            token = SA_TOKEN.read_text().strip()
        except OSError:
            return False
        if not token or self._headers.get("Authorization") == f"Bearer {token}":
            return False
        self._headers["Authorization"] = f"Bearer {token}"
        if self._session is not None:
            self._session.headers["Authorization"] = self._headers["Authorization"]
        return True

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        await self._request(
            "PATCH",
            self.job_path(namespace, name) + "/status",
            json={"status": dict(status)},
            headers={"Content-Type": "application/merge-patch+json"},
            parse=False,  # the driver keeps its own copy of the status; the answer is not needed
        )

    async def delete_job(self, namespace: str, name: str, uid: str | None = None) -> None:
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}  # never delete a newer job of the same name
        try:
            await self._request("DELETE", self.job_path(namespace, name), json=body)
        except KubeError as e:
            if e.status not in (404, 409):
                raise

    async def read_secret(self, namespace: str, name: str) -> Mapping[str, str]:
        try:
            obj = await self._request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        except KubeError as e:
            if e.status == 404:
                raise StageError.temporary(
                    "SecretNotFound", f"Secret {namespace}/{name} does not exist (yet); create it"
                ) from e
            if e.status == 403:
                raise StageError.permanent(
                    "SecretForbidden", f"the operator may not read Secret {namespace}/{name}; check its RBAC"
                ) from e
            raise StageError.temporary("KubernetesApiError", f"reading Secret {namespace}/{name}: {e}") from e
        out = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        out.update(obj.get("stringData") or {})
        return out

    # -- collections (informers) -----------------------------------------------------------------
    async def list(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        """``GET`` a collection; 403 and 404 (no RBAC, no such API) raise ``DiscoveryUnavailable``."""
        qs = urlencode(dict(params))
        try:
            return await self._request("GET", f"{path}?{qs}" if qs else path)
        except KubeError as e:
            if e.status in (403, 404):
                raise DiscoveryUnavailable(f"listing {path} answered {e}") from e
            raise

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        """The events of a watch, one per line, until the server ends it."""
        timeout = aiohttp.ClientTimeout(total=None, sock_read=float(params.get("timeoutSeconds", 300)) + 30)
        async with self._client().get(self._base + path, params=dict(params), timeout=timeout) as resp:
            if resp.status in (403, 404):
                raise DiscoveryUnavailable(f"watching {path} answered {resp.status}")
            if resp.status >= 400:
                raise KubeError(resp.status, (await resp.text())[:500])
            buf = b""
            async for chunk in resp.content.iter_any():  # lines can outgrow readline()'s limit
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield _json.loads(line)
