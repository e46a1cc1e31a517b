"""A round-robin loopback proxy in front of several ASR replicas: what a Kubernetes Service does for
the operator until it can reach each replica itself (EndpointSlice support, issue 11).

A replica that refuses connections is skipped (as an endpoint that is not ready); a request whose
replica dies mid-way answers 502, which the operator treats as retryable. Every 200 answer is
tallied per replica *incarnation* (a restart starts a new one) with the audio seconds it reported,
so the system test can compare the ASR services' own Prometheus counters with what was served.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import aiohttp.web

from tests.support.operator_services import LoopbackApp


@dataclass
class Replica:
    url: str
    incarnation: int = 0
    in_flight: int = 0
    ok: Counter[int] = field(default_factory=Counter)  # incarnation -> 200 answers
    audio_s: Counter[int] = field(default_factory=Counter)  # incarnation -> audio seconds answered
    broken: int = 0  # requests cut off by the replica dying


class Balancer(LoopbackApp):
    def __init__(self, upstreams: list[str], name: str = "asr-service") -> None:
        self.replicas = [Replica(u.rstrip("/")) for u in upstreams]
        self._next = itertools.count()
        self._session: aiohttp.ClientSession | None = None
        super().__init__(name)
        self.url = f"http://127.0.0.1:{self.port}"

    def app(self) -> aiohttp.web.Application:
        app = aiohttp.web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=2))
        await super()._start()

    async def _shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
        await super()._shutdown()

    def restarted(self, index: int) -> None:
        """The replica at ``index`` was started again: its counters start from zero."""
        self.replicas[index].incarnation += 1

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        start = next(self._next)
        assert self._session is not None
        for i in range(len(self.replicas)):
            rep = self.replicas[(start + i) % len(self.replicas)]
            incarnation = rep.incarnation
            rep.in_flight += 1
            try:
                async with self._session.request(
                    request.method, rep.url + str(request.rel_url), data=body, headers=headers
                ) as up:
                    data = await up.read()
                    status, ctype = up.status, up.headers.get("Content-Type", "application/json")
            except aiohttp.ClientConnectorError:
                continue  # not listening: the next endpoint
            except (aiohttp.ClientError, ConnectionError) as e:
                rep.broken += 1
                return aiohttp.web.json_response(
                    {
                        "error": {
                            "code": "upstream_gone",
                            "message": f"replica {rep.url} went away: {e}",
                            "retryable": True,
                            "details": {},
                        }
                    },
                    status=502,
                )
            finally:
                rep.in_flight -= 1
            if status == 200 and request.path == "/v1/transcriptions":
                rep.ok[incarnation] += 1
                try:
                    rep.audio_s[incarnation] += float(json.loads(data).get("duration") or 0.0)
                except ValueError:
                    pass
            return aiohttp.web.Response(body=data, status=status, headers={"Content-Type": ctype})
        return aiohttp.web.json_response(
            {
                "error": {
                    "code": "no_endpoints",
                    "message": "no ASR replica is listening",
                    "retryable": True,
                    "details": {},
                }
            },
            status=503,
        )
