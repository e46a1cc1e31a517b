"""The operator's own API client: status writes with the login's credentials, a rotated
service-account token picked up on 401, Secrets decoded, clear errors."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import aiohttp.web
import kopf
import pytest
from omoai_operator import kube as kube_module
from omoai_operator.clients import StageError
from omoai_operator.kube import KubeClient, KubeError


async def _server(tokens: dict[str, str]) -> tuple[aiohttp.web.AppRunner, str]:
    async def handler(request: aiohttp.web.Request) -> aiohttp.web.Response:
        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {tokens['valid']}":
            return aiohttp.web.json_response({"kind": "Status", "message": "Unauthorized"}, status=401)
        if request.path.endswith("/secrets/creds"):
            return aiohttp.web.json_response({"data": {"accessKeyId": base64.b64encode(b"AKIA").decode()}})
        if request.path.endswith("/secrets/absent"):
            return aiohttp.web.json_response({"kind": "Status", "message": "not found"}, status=404)
        return aiohttp.web.json_response(await request.json())

    app = aiohttp.web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.mark.timeout(30)
async def test_a_rotated_service_account_token_is_picked_up_on_401(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = {"valid": "old-token"}
    runner, url = await _server(tokens)
    token_file = tmp_path / "token"
    monkeypatch.setattr(kube_module, "SA_TOKEN", token_file)
    client = KubeClient(kopf.ConnectionInfo(server=url, token="old-token"))
    try:
        await client.patch_status("ns", "job", {"phase": "Pending"})
        tokens["valid"] = "new-token"  # the kubelet rotated the projected token
        token_file.write_text("new-token\n")
        await client.patch_status("ns", "job", {"phase": "Queued"})
        assert (await client.read_secret("ns", "creds")) == {"accessKeyId": "AKIA"}
        with pytest.raises(StageError) as e:
            await client.read_secret("ns", "absent")
        assert e.value.failure.retryable and e.value.failure.reason == "SecretNotFound"
        tokens["valid"] = "newer-token"  # and no file to read it from: a clear 401
        token_file.unlink()
        with pytest.raises(KubeError) as err:
            await client.patch_status("ns", "job", {"phase": "Queued"})
        assert err.value.status == 401
    finally:
        await client.aclose()
        await runner.cleanup()
        await asyncio.sleep(0)
