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
from omoai_core.errors import error_body
from omoai_operator.sse import EventParser

from tests.support.operator_services import ForwardingProxy, answer


@dataclass
class Replica:
    url: str
    incarnation: int = 0
    in_flight: int = 0
    ok: Counter[int] = field(default_factory=Counter)  # incarnation -> 200 answers
    audio_s: Counter[int] = field(default_factory=Counter)  # incarnation -> audio seconds answered
    broken: int = 0  # requests cut off by the replica dying


class Balancer(ForwardingProxy):
    handler_cancellation = False
    connect_timeout_s = 2.0

    def __init__(self, upstreams: list[str], name: str = "asr-service") -> None:
        self.replicas = [Replica(u.rstrip("/")) for u in upstreams]
        self._next = itertools.count()
        super().__init__(name)

    def restarted(self, index: int) -> None:
        """The replica at ``index`` was started again: its counters start from zero."""
        self.replicas[index].incarnation += 1

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        body = await request.read()
        start = next(self._next)
        for i in range(len(self.replicas)):
            rep = self.replicas[(start + i) % len(self.replicas)]
            incarnation = rep.incarnation
            rep.in_flight += 1
            try:
                status, data, ctype = await self.forward(request, rep.url, body)
            except aiohttp.ClientConnectorError:
                continue  # not listening: the next endpoint
            except (aiohttp.ClientError, ConnectionError) as e:
                rep.broken += 1
                return aiohttp.web.json_response(
                    error_body("upstream_gone", f"replica {rep.url} went away: {e}", retryable=True), status=502
                )
            finally:
                rep.in_flight -= 1
            if status == 200 and request.path == "/v1/transcriptions":
                rep.ok[incarnation] += 1
                rep.audio_s[incarnation] += _answered_duration(data, ctype)
            return answer(status, data, ctype)
        return aiohttp.web.json_response(
            error_body("no_endpoints", "no ASR replica is listening", retryable=True), status=503
        )


def _answered_duration(data: bytes, ctype: str) -> float:
    """The audio duration of a transcript answer: plain JSON, or the ``done`` event of a streamed
    (``stream=true``) answer, which is what the operator asks for."""
    try:
        if ctype.startswith("text/event-stream"):
            done = [e for e in EventParser().feed(data.decode() + "\n\n") if e.event == "done"]
            return float(json.loads(done[-1].data).get("duration") or 0.0) if done else 0.0
        return float(json.loads(data).get("duration") or 0.0)
    except (ValueError, UnicodeDecodeError):
        return 0.0
