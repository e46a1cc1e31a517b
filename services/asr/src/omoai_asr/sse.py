"""Server-Sent Events answers: ``text/event-stream`` of ``(event name or None, JSON data)`` pairs.

A streamed answer outlives the request handler that returns it, so its outcome (success, the
error's class, or a client that hung up) is known only when the stream ends: `EventStream` reports
it once, then, to whoever set ``on_end`` (the request accounting in `AsrServing.run`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable

from fastapi.responses import StreamingResponse
from omoai_core.errors import OmoaiError, error_body

from omoai_asr.metrics import Outcome, outcome_of

log = logging.getLogger(__name__)


class EventStream(StreamingResponse):
    """An error after the stream has started cannot change the status any more: it arrives as
    ``event: error`` with the usual error body. A client that hangs up closes ``events`` (its
    ``finally`` blocks stop the work) and the outcome is ``cancelled``."""

    def __init__(self, events: AsyncIterator[tuple[str | None, object]]) -> None:
        #: Called once with the stream's outcome (a value of ``omoai_asr_requests_total``'s label).
        self.on_end: Callable[[Outcome], None] | None = None
        super().__init__(self._body(events), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def _body(self, events: AsyncIterator[tuple[str | None, object]]) -> AsyncIterator[bytes]:
        outcome: Outcome = "cancelled"  # unless the loop below ends: the client went away mid-stream
        try:
            async for name, data in events:
                yield event_bytes(name, data)
            outcome = "success"
        except OmoaiError as e:
            outcome = outcome_of(e.code, e.http_status)
            yield event_bytes("error", e.to_dict())
        except Exception:
            outcome = "error"
            log.exception("a streamed answer failed")
            yield event_bytes("error", error_body("internal_error", "the transcription failed", retryable=True))
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
            if self.on_end is not None:
                self.on_end(outcome)


def event_bytes(name: str | None, data: object) -> bytes:
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()
