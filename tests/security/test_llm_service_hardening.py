"""The LLM service: authentication before the body is read or parsed (everywhere, docs included),
non-finite numbers and deep nesting are 400s, slow clients are cut off, and a client that hangs up
stops its generation so the next small request is served at once.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests.security.harness import AUTH, TOKEN, HealthSampler, MiB, Server, llm_server, read_response, status_of
from tests.support.processes import free_port

pytestmark = pytest.mark.timeout(600)

SEGMENTS = [{"text": "xin chào các bạn hôm nay chúng ta nói về trí tuệ nhân tạo", "start": 0.0, "end": 3.0}]


@pytest.fixture(scope="module")
def server(llm_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with llm_server(
        llm_model,
        tmp_path_factory.mktemp("llm"),
        OMOAI_MAX_REQUEST_BYTES=str(200 * MiB),
        OMOAI_HEADER_TIMEOUT_S="2",
        OMOAI_BODY_READ_TIMEOUT_S="2",
        OMOAI_PUNCT_CHUNK_TOKENS="64",
        OMOAI_SUMMARY_MAX_TOKENS="32",
    ) as s:
        yield s


def test_authentication_comes_before_the_body_is_read_or_parsed(server: Server):
    malformed = httpx.post(
        server.url + "/v1/punctuate", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 401 and malformed.headers["www-authenticate"] == "Bearer"
    baseline = server.peak_rss()
    with server.connect() as sock:  # 150 MB announced without a token: refused before it is sent
        sock.sendall(
            b"POST /v1/punctuate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(150 * MiB).encode() + b"\r\n\r\n" + b"[" * 65536
        )
        assert status_of(read_response(sock, 10)) == 401
    big = httpx.post(
        server.url + "/v1/punctuate",
        content=b" " * (100 * MiB),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert big.status_code == 401
    assert server.peak_rss() - baseline < 50 * MiB
    for path in ("/docs", "/redoc", "/openapi.json", "/v1/unknown"):
        assert httpx.get(server.url + path).status_code == 401, path
    assert httpx.get(server.url + "/openapi.json", headers=AUTH).status_code == 200
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(server.url + path).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b'{"segments": [{"text": "a b", "start": 0, "end": 1e309}]}',
        b'{"segments": [{"text": "a b", "start": 0, "end": Infinity}]}',
        b'{"segments": [{"text": "a b", "start": -Infinity, "end": 1}]}',
        b'{"segments": [{"text": "a b", "start": NaN, "end": 1}]}',
        b'{"segments": [{"text": "a b", "start": 0, "end": 1' + b"0" * 5000 + b"}]}",
        b'{"segments": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"x": ' * 5000 + b"1" + b"}" * 5000,
        b"\xff\xfe",
        b"",
    ],
    ids=["1e309", "Infinity", "-Infinity", "NaN", "huge-int", "deep-array", "deep-object", "not-utf8", "empty"],
)
def test_non_finite_numbers_and_malformed_json_are_400(server: Server, body: bytes):
    r = httpx.post(server.url + "/v1/punctuate", content=body, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_input"


def test_a_valid_request_still_works_and_a_slow_header_is_cut_off(server: Server):
    r = httpx.post(server.url + "/v1/punctuate", json={"segments": SEGMENTS}, headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    assert json.loads(r.text)["segments"][0]["end"] == 3.0
    with server.connect() as sock:
        sock.sendall(b"POST /v1/punctuate HTTP/1.1\r\nhost: x\r\n")
        assert status_of(read_response(sock, 10)) == 408
    assert "Traceback" not in server.logs()


# -- a client that hangs up ------------------------------------------------------------------------


@contextlib.contextmanager
def _serve(app, settings) -> Iterator[str]:
    from omoai_http.server import uvicorn_config

    server = uvicorn.Server(uvicorn_config(app, settings, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://{settings.host}:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(30)


def test_hang_ups_stop_generation_and_drop_queued_work_so_the_next_request_is_served_promptly(llm_model: Path):
    from omoai_core.settings import load_settings
    from omoai_llm.app import create_app
    from omoai_llm.backends import load_backend
    from omoai_llm.settings import LlmSettings

    settings = load_settings(
        LlmSettings,
        backend="transformers",
        model=str(llm_model),
        device="cpu",
        port=free_port(),
        api_token=TOKEN,
        max_concurrency=1,
        summary_max_tokens=3500,
    )
    calls: list[dict[str, float]] = []
    started = threading.Event()
    holder: dict = {}

    async def loader(model: str):
        backend = await load_backend(settings, model, holder["app"].state.policy)
        backend._eos_ids = set()  # the random model may emit EOS at any step; make the long call long
        inner = backend._generate_batch

        def timed(group, temperature):
            call = {"start": time.monotonic(), "prompts": len(group)}
            calls.append(call)
            started.set()
            try:
                return inner(group, temperature)
            finally:
                call["end"] = time.monotonic()

        backend._generate_batch = timed
        return backend

    app = create_app(settings, loader=loader)
    holder["app"] = app
    with _serve(app, settings) as url:
        body = json.dumps({"text": "xin chào các bạn hôm nay trời đẹp quá"}).encode()
        request = (
            b"POST /v1/summarize HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"authorization: Bearer "
            + TOKEN.encode()
            + b"\r\ncontent-length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        sock = socket.create_connection(("127.0.0.1", settings.port))
        sock.sendall(request)
        assert started.wait(60), "generation did not start"
        queued = socket.create_connection(("127.0.0.1", settings.port))  # waits behind the first (limit 1)
        queued.sendall(request)
        time.sleep(1.0)
        assert "end" not in calls[0], "the long generation finished before the hang-up; the test proves nothing"
        queued.close()
        sock.close()
        hung_up = time.monotonic()
        deadline = hung_up + 10
        while "end" not in calls[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "end" in calls[0], "generation kept running after the client hung up"
        stopped_after = calls[0]["end"] - hung_up
        time.sleep(0.5)
        assert len(calls) == 1, "the queued request of a client that hung up still reached the model"
        with HealthSampler(url) as health:
            t0 = time.monotonic()
            r = httpx.post(url + "/v1/punctuate", json={"segments": SEGMENTS}, headers=AUTH, timeout=60)
            small = time.monotonic() - t0
        assert r.status_code == 200, r.text
        print(f"generation stopped {stopped_after:.2f} s after the hang-up; next request took {small:.2f} s")
        assert stopped_after < 3.0
        assert small < 10.0
        assert health.worst < 0.5
