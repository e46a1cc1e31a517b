"""Loopback HTTP servers for the operator tests, each in its own thread and event loop:

- :class:`ForwardingProxy`: the base of every loopback reverse proxy in the tests (this module's
  :class:`FaultProxy`, ``replicas.ReplicaProxy``, ``tests/system/balancer.Balancer``): one
  catch-all route, one client session, :meth:`ForwardingProxy.forward`, and a listening socket
  that can be stopped and started again; subclasses write only their ``_handle``.
- :class:`FaultProxy`: a reverse proxy in front of a service that can refuse connections (the
  service is down), answer a status code instead (500, 503, 429), delay, or block requests until
  released (all at once, or one at a time); it counts requests, responses and the requests in flight (their maximum too).
- :class:`StubServices`: small stand-ins for the ASR and LLM HTTP APIs (same paths, same shapes),
  used where a test needs many instant answers (throughput, 50 jobs); the end-to-end scenarios put
  the proxy in front of the real services instead.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import aiohttp.web

from tests.support.processes import free_port


class LoopThread:
    """An event loop in a daemon thread; ``run(coro)`` executes on it from any thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class LoopbackApp:
    """An aiohttp application on a free loopback port, served from its own :class:`LoopThread`.
    Subclasses set their own state first, then call ``super().__init__``, which starts serving."""

    def __init__(self, name: str) -> None:
        self.port = free_port()
        self._lt = LoopThread(name)
        self._runner: aiohttp.web.AppRunner | None = None
        self._site: aiohttp.web.TCPSite | None = None
        self._lt.run(self._start())

    def app(self) -> aiohttp.web.Application:
        raise NotImplementedError

    async def _start(self) -> None:
        self._runner = aiohttp.web.AppRunner(self.app(), shutdown_timeout=0.5)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()

    async def _stop_listening(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None

    # -- controls (any thread) ---------------------------------------------------------------------
    def down(self) -> None:
        """Refuse connections, as a server that is not running."""
        self._lt.run(self._stop_listening())

    def up(self) -> None:
        self._lt.run(self._listen())

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def close(self) -> None:
        try:
            self._lt.run(self._shutdown())
        finally:
            self._lt.stop()


class ForwardingProxy(LoopbackApp):
    """A loopback reverse proxy: every path goes to ``_handle``, which forwards with :meth:`forward`.

    ``handler_cancellation``: a client that goes away cancels its handler (how a cancelled job is
    observed); ``connect_timeout_s``: how long an upstream that does not answer the connection is
    given (None: no limit)."""

    handler_cancellation = True
    connect_timeout_s: float | None = None

    def __init__(self, name: str) -> None:
        self._session: aiohttp.ClientSession | None = None
        super().__init__(name)
        self.url = f"http://127.0.0.1:{self.port}"

    def app(self) -> aiohttp.web.Application:
        app = aiohttp.web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        raise NotImplementedError

    async def _start(self) -> None:
        self._runner = aiohttp.web.AppRunner(
            self.app(), shutdown_timeout=0.5, handler_cancellation=self.handler_cancellation
        )
        await self._runner.setup()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout)
        await self._listen()

    async def _shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
        await super()._shutdown()

    async def forward(self, request: aiohttp.web.Request, upstream: str, body: bytes) -> tuple[int, bytes, str]:
        """(status, body, content type) of ``request`` (its ``body`` already read) sent to ``upstream``."""
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._session.request(
            request.method, upstream + str(request.rel_url), data=body, headers=headers
        ) as up:
            return up.status, await up.read(), up.headers.get("Content-Type", "application/json")


def answer(status: int, data: bytes, content_type: str) -> aiohttp.web.Response:
    return aiohttp.web.Response(body=data, status=status, headers={"Content-Type": content_type})


@dataclass
class Fault:
    """What the proxy does with the next requests matching ``path`` (None = any path)."""

    status: int | None = None  # answer this instead of forwarding
    times: int | None = None  # how many requests; None = until changed
    path: str | None = None
    body: dict[str, Any] = field(
        default_factory=lambda: {
            "error": {"code": "injected", "message": "injected fault", "retryable": True, "details": {}}
        }
    )


class FaultProxy(ForwardingProxy):
    def __init__(self, upstream: str, name: str = "proxy") -> None:
        self.upstream = upstream.rstrip("/")
        self.name = name
        self.faults: list[Fault] = []
        self.gate = threading.Event()
        self.gate.set()
        self.gate_paths: set[str] | None = None
        self._passes = 0  # held requests allowed through one by one (see let_one)
        self.requests: list[tuple[float, str, dict[str, Any] | None]] = []
        self.responses: Counter[tuple[str, int]] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.in_flight_by_path: Counter[str] = Counter()
        self.max_in_flight_by_path: Counter[str] = Counter()
        self.cancelled = 0
        super().__init__(name)

    # -- controls (any thread) ---------------------------------------------------------------------
    def fail(self, status: int, times: int | None = None, path: str | None = None) -> None:
        self.faults.append(Fault(status=status, times=times, path=path))

    def clear(self) -> None:
        self.faults.clear()

    def hold(self, paths: set[str] | None = None) -> None:
        """Block matching requests (all when ``paths`` is None) until :meth:`release`."""
        self.gate_paths = paths
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def let_one(self) -> None:
        """Let one held request through (whichever is next to look); the others stay held."""
        self._lt.loop.call_soon_threadsafe(self._add_pass)

    def _add_pass(self) -> None:
        self._passes += 1

    def count(self, path: str) -> int:
        return sum(1 for _, p, _ in self.requests if p == path)

    def ok(self, path: str) -> int:
        return self.responses[(path, 200)]

    def wait_for(self, pred: Callable[[], bool], timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > end:
                raise AssertionError(f"{self.name}: condition not met in {timeout}s; requests={len(self.requests)}")
            time.sleep(0.05)

    def close(self) -> None:
        self.release()
        super().close()

    # -- proxying ----------------------------------------------------------------------------------
    def _fault_for(self, path: str) -> Fault | None:
        for f in self.faults:
            if f.path is not None and f.path != path:
                continue
            if f.times is not None:
                if f.times <= 0:
                    continue
                f.times -= 1
            return f
        return None

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        path = request.path
        body = await request.read()
        try:
            payload = json.loads(body) if body and request.content_type == "application/json" else None
        except ValueError:
            payload = None
        self.requests.append((time.monotonic(), path, payload))
        self.in_flight += 1
        self.in_flight_by_path[path] += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.max_in_flight_by_path[path] = max(self.max_in_flight_by_path[path], self.in_flight_by_path[path])
        try:
            if self.gate_paths is None or path in self.gate_paths:
                while not self.gate.is_set():
                    if self._passes > 0:
                        self._passes -= 1
                        break
                    await asyncio.sleep(0.02)
            fault = self._fault_for(path)
            if fault is not None and fault.status is not None:
                self.responses[(path, fault.status)] += 1
                return aiohttp.web.json_response(fault.body, status=fault.status)
            status, data, ctype = await self.forward(request, self.upstream, body)
            self.responses[(path, status)] += 1
            return answer(status, data, ctype)
        except asyncio.CancelledError:
            self.cancelled += 1  # the client went away (a cancelled job)
            raise
        finally:
            self.in_flight -= 1
            self.in_flight_by_path[path] -= 1


class StubServices(LoopbackApp):
    """Instant ASR and LLM stand-ins with the real paths and shapes (``omoai_core.schemas``).

    With ``stream_windows`` set, ``POST /v1/transcriptions?stream=true`` answers as the ASR service
    streams (``text/event-stream``: a ``progress`` event per window, ``window_delay_s`` apart, then
    ``done`` with the transcript); ``stream_end`` may instead end it without ``done`` ("cut") or
    with an ``error`` event. Without it the stub answers plain JSON, as a replica that does not stream.
    """

    def __init__(self, *, asr_delay_s: float = 0.0, llm_delay_s: float = 0.0) -> None:
        self.stream_windows = 0
        self.window_delay_s = 0.0
        self.audio_seconds = 2.0
        self.stream_end = "done"
        self.strict = False  # a replica predating streaming: no SSE, and ``stream`` in a body refused
        self.fetch_audio = False  # download audio_url like the real service (presigned S3 URLs)
        self.fetched: dict[str, int] = {}  # audio_url -> bytes downloaded
        self.asr_delay_s = asr_delay_s
        self.llm_delay_s = llm_delay_s
        self.asr_order: list[str] = []
        self.asr_seen: dict[str, float] = {}  # audio_url -> monotonic time of its first request
        super().__init__("stub-services")
        self.url = f"http://127.0.0.1:{self.port}"

    def app(self) -> aiohttp.web.Application:
        app = aiohttp.web.Application()
        app.router.add_post("/v1/transcriptions", self._asr)
        app.router.add_post("/v1/punctuate", self._punctuate)
        app.router.add_post("/v1/summarize", self._summarize)
        app.router.add_post("/v1/topics", self._topics)
        app.router.add_get("/readyz", self._ready)
        return app

    async def _ready(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"status": "ready"})

    async def _asr(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        body = await request.json()
        if self.strict and "stream" in body:
            error = {"code": "invalid_input", "message": "stream: unknown field", "retryable": False, "details": {}}
            return aiohttp.web.json_response({"error": error}, status=400)
        self.asr_order.append(body["audio_url"])
        self.asr_seen.setdefault(body["audio_url"], time.monotonic())
        if self.fetch_audio:
            async with aiohttp.ClientSession() as http, http.get(body["audio_url"]) as resp:
                if resp.status != 200:
                    return aiohttp.web.json_response(
                        {
                            "error": {
                                "code": "fetch_failed",
                                "message": f"audio_url answered {resp.status}",
                                "retryable": False,
                                "details": {},
                            }
                        },
                        status=422,
                    )
                self.fetched[body["audio_url"]] = len(await resp.read())
        if self.asr_delay_s:
            await asyncio.sleep(self.asr_delay_s)
        words = ["xin", "chào", "các", "bạn"]
        segment = {
            "text": " ".join(words),
            "start": 0.0,
            "end": 2.0,
            "words": [{"word": w, "start": i * 0.5, "end": i * 0.5 + 0.4} for i, w in enumerate(words)],
        }
        transcript = {
            "text": " ".join(words),
            "duration": self.audio_seconds,
            "model": "stub",
            "language": "vi",
            "segments": [segment],
        }
        if self.stream_windows and request.query.get("stream") == "true" and not self.strict:
            return await self._stream(request, transcript, segment)
        return aiohttp.web.json_response(transcript)

    async def _stream(
        self, request: aiohttp.web.Request, transcript: dict[str, Any], segment: dict[str, Any]
    ) -> aiohttp.web.StreamResponse:
        resp = aiohttp.web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)

        async def send(event: str, data: Any) -> None:
            await resp.write(f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode())

        total = self.audio_seconds
        for i in range(1, self.stream_windows + 1):
            await asyncio.sleep(self.window_delay_s)
            await send(
                "progress", {"audio_seconds_done": total * i / self.stream_windows, "audio_seconds_total": total}
            )
            if i == 1:
                await send("segment", segment)
        if self.stream_end == "done":
            await send("done", transcript)
        elif self.stream_end == "error":
            body = {
                "error": {"code": "decode_failed", "message": "the decoder failed", "retryable": True, "details": {}}
            }
            await send("error", body)
        await resp.write_eof()
        return resp

    async def _punctuate(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        body = await request.json()
        if self.llm_delay_s:
            await asyncio.sleep(self.llm_delay_s)
        segs = [{**s, "text": s["text"].capitalize() + "."} for s in body["segments"]]
        n = sum(len(s["text"].split()) for s in segs)
        return aiohttp.web.json_response(
            {
                "segments": segs,
                "text": " ".join(s["text"] for s in segs),
                "quality": {"wer": 0.0, "cer": 0.0, "words_in": n, "words_out": n},
            }
        )

    async def _summarize(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        await request.json()
        return aiohttp.web.json_response(
            {"summary": {"title": "Lời chào", "abstract": "Một lời chào.", "bullets": ["chào"]}}
        )

    async def _topics(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        await request.json()
        return aiohttp.web.json_response({"topics": [{"title": "Chào hỏi", "start": 0.0, "end": 2.0}]})


@dataclass
class Received:
    """One delivery as the receiver saw it."""

    at: float  # monotonic time of arrival
    wall: float  # Unix time of arrival
    headers: dict[str, str]  # lower-case names
    body: bytes
    verified_by: list[int]  # indices of the receiver's secrets whose check (standardwebhooks) passed
    status: int  # what the receiver answered

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver(LoopbackApp):
    """A webhook endpoint on loopback: every request is checked with the ``standardwebhooks`` library
    against each of ``secrets`` (which ones pass is recorded), then answered from a script (status,
    headers, delay), or 204 when the script is empty. ``down``/``up`` make it unreachable and back."""

    def __init__(self, secrets: list[str]) -> None:
        from standardwebhooks import Webhook

        self.checkers = [Webhook(s) for s in secrets]
        self.received: list[Received] = []
        self.script: list[tuple[int, dict[str, str], float]] = []
        super().__init__("webhook-receiver")
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def app(self) -> aiohttp.web.Application:
        app = aiohttp.web.Application()
        app.router.add_post("/hook", self._hook)
        return app

    def answer(self, status: int, times: int = 1, headers: dict[str, str] | None = None, delay_s: float = 0.0) -> None:
        """Answer the next ``times`` requests with ``status`` (after ``delay_s``)."""
        self.script += [(status, headers or {}, delay_s)] * times

    async def _hook(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        from standardwebhooks import WebhookVerificationError

        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified = []
        for i, checker in enumerate(self.checkers):
            try:
                checker.verify(body, headers)
                verified.append(i)
            except WebhookVerificationError:
                pass
        status, extra, delay = self.script.pop(0) if self.script else (204, {}, 0.0)
        self.received.append(Received(time.monotonic(), time.time(), headers, body, verified, status))
        if delay:
            await asyncio.sleep(delay)
        return aiohttp.web.Response(status=status, headers=extra)


class FakeOpenAI(LoopbackApp):
    """An OpenAI-compatible chat server answering at once, so the real LLM service (openai backend)
    runs its real alignment, parsing and HTTP API without a slow CPU model behind it."""

    MODEL = "fake-llm"

    def __init__(self) -> None:
        self.calls = 0
        super().__init__("fake-openai")
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def app(self) -> aiohttp.web.Application:
        app = aiohttp.web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _models(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"object": "list", "data": [{"id": self.MODEL, "object": "model"}]})

    async def _chat(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.calls += 1
        body = await request.json()
        system = " ".join(m["content"] for m in body["messages"] if m["role"] == "system")
        user = body["messages"][-1]["content"]
        if '"segment"' in system:
            content = json.dumps([{"segment": 1, "title": "Lời chào", "summary": "Mở đầu."}], ensure_ascii=False)
        elif '"title"' in system:
            content = json.dumps(
                {"title": "Lời chào", "abstract": "Một lời chào ngắn.", "bullets": ["chào", "hỏi", "đáp"]},
                ensure_ascii=False,
            )
        elif '"abstract"' in system:
            content = json.dumps({"abstract": "Một phần.", "bullets": ["ý"]}, ensure_ascii=False)
        else:  # punctuation: the words back, capitalised, with a full stop
            words = user.split()
            content = (" ".join(words[:1]).capitalize() + " " + " ".join(words[1:])).strip() + "."
        return aiohttp.web.json_response(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "model": self.MODEL,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {
                    "prompt_tokens": len(system.split()) + len(user.split()),
                    "completion_tokens": len(content.split()),
                },
            }
        )


class FakeS3(LoopbackApp):
    """A path-style S3 endpoint on loopback with the calls the operator makes (put, get, head,
    copy, delete, list v2), so real boto3 and presigned URLs are exercised. Signatures are not
    checked; objects live in ``objects`` (key ``bucket/key``)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.presigned_gets: list[str] = []
        super().__init__("fake-s3")
        self.url = f"http://127.0.0.1:{self.port}"

    def app(self) -> aiohttp.web.Application:
        app = aiohttp.web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{bucket}", self._bucket)
        app.router.add_route("*", "/{bucket}/{key:.+}", self._object)
        return app

    @staticmethod
    def _missing(key: str) -> aiohttp.web.Response:
        body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code><Key>{key}</Key></Error>"
        return aiohttp.web.Response(status=404, body=body.encode(), content_type="application/xml")

    @staticmethod
    def _unchunk(request: aiohttp.web.Request, raw: bytes) -> bytes:
        # botocore may send aws-chunked bodies with a trailing checksum.
        if "aws-chunked" not in request.headers.get("Content-Encoding", "") and not request.headers.get(
            "x-amz-content-sha256", ""
        ).startswith("STREAMING"):
            return raw
        out, pos = bytearray(), 0
        while True:
            end = raw.index(b"\r\n", pos)
            size = int(raw[pos:end].split(b";")[0], 16)
            if size == 0:
                return bytes(out)
            out += raw[end + 2 : end + 2 + size]
            pos = end + 2 + size + 2

    async def _object(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        from urllib.parse import unquote

        path = f"{request.match_info['bucket']}/{unquote(request.match_info['key'])}"
        if request.method == "PUT":
            source = request.headers.get("x-amz-copy-source")
            if source:
                src = unquote(source).lstrip("/")
                if src not in self.objects:
                    return self._missing(src)
                self.objects[path] = self.objects[src]
                body = (
                    "<?xml version='1.0' encoding='UTF-8'?><CopyObjectResult><ETag>\"e\"</ETag>"
                    "<LastModified>2026-01-01T00:00:00.000Z</LastModified></CopyObjectResult>"
                )
                return aiohttp.web.Response(body=body.encode(), content_type="application/xml")
            self.objects[path] = self._unchunk(request, await request.read())
            return aiohttp.web.Response(headers={"ETag": '"e"'})
        if request.method in ("GET", "HEAD"):
            if path not in self.objects:
                return self._missing(path) if request.method == "GET" else aiohttp.web.Response(status=404)
            if any(q.endswith("Signature") for q in request.query):  # SigV2 or SigV4 presigned
                self.presigned_gets.append(path)
            data = self.objects[path]
            if request.method == "HEAD":
                return aiohttp.web.Response(headers={"Content-Length": str(len(data)), "ETag": '"e"'})
            return aiohttp.web.Response(body=data, headers={"ETag": '"e"'}, content_type="application/octet-stream")
        if request.method == "DELETE":
            self.objects.pop(path, None)
            return aiohttp.web.Response(status=204)
        return aiohttp.web.Response(status=405)

    async def _bucket(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        bucket = request.match_info["bucket"]
        prefix = request.query.get("prefix", "")
        keys = sorted(k[len(bucket) + 1 :] for k in self.objects if k.startswith(f"{bucket}/{prefix}"))
        contents = "".join(
            f"<Contents><Key>{k}</Key><Size>{len(self.objects[bucket + '/' + k])}</Size></Contents>" for k in keys
        )
        body = (
            f"<?xml version='1.0' encoding='UTF-8'?><ListBucketResult><Name>{bucket}</Name><Prefix>{prefix}"
            f"</Prefix><KeyCount>{len(keys)}</KeyCount><IsTruncated>false</IsTruncated>{contents}</ListBucketResult>"
        )
        return aiohttp.web.Response(body=body.encode(), content_type="application/xml")
