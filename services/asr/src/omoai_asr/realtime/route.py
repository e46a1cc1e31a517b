"""``GET /v1/realtime?intent=transcription``: the thin WebSocket endpoint. It checks the bearer
token (the HTTP middleware does not see WebSockets), admits the session, then only moves frames:
text frames into :class:`~omoai_asr.realtime.session.RealtimeSession`, its events out through a
bounded outbox. Every end has an ``error`` event (except the client's own close) and a close code:

- 1000: the client closed, or asked a non-transcription intent (refused before the session);
- 1008: a limit: ``idle_timeout``, ``session_expired``, ``client_too_slow`` (its outbox overflowed);
- 1011: an internal error;
- 1012: the replica is shutting down (SIGTERM): every committed item and the buffer's audio were
  transcribed and sent first; reconnect (to another replica);
- 1013: ``too_many_sessions`` (``OMOAI_LIVE_MAX_STREAMS``) or the model is still loading: try
  again later.

A refused token is an HTTP 401 before the upgrade, as for the HTTP API.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from typing import Any

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from omoai_core.errors import OverloadedError, UnauthorizedError, UnavailableError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from omoai_asr.realtime import events as ev
from omoai_asr.realtime.hub import RealtimeHub
from omoai_asr.realtime.session import OutboxFullError, RealtimeSession, StreamFailedError
from omoai_asr.settings import AsrSettings

log = logging.getLogger(__name__)

router = APIRouter()

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_RESTART = 1012
CLOSE_TRY_AGAIN = 1013
FINAL_SEND_S = 5.0  # how long the last events may take to reach a client before the close


def max_frame_bytes(settings: AsrSettings) -> int:
    """The WebSocket frame limit (uvicorn closes larger frames with 1009): the largest append's
    base64 text and the event around it."""
    return 4 * -(-settings.realtime_max_append_bytes // 3) + 4096


class _Outbox:
    """Server events waiting for the socket; full means the client stopped reading."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[ev.ServerEvent | None] = asyncio.Queue(size)

    def put(self, event: ev.ServerEvent) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            raise OutboxFullError from None

    async def send_all(self, websocket: WebSocket) -> None:
        while (event := await self.queue.get()) is not None:
            await websocket.send_text(event.model_dump_json())


def _authorized(websocket: WebSocket, token: str | None) -> bool:
    if not token:
        return True
    scheme, _, given = websocket.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def _refuse(websocket: WebSocket, code: str, message: str, close_code: int) -> None:
    await websocket.accept()
    await websocket.send_text(ev.ErrorEvent(error=ev.ErrorDetail(code=code, message=message)).model_dump_json())
    await websocket.close(close_code, message[:120])


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket) -> None:
    hub: RealtimeHub = websocket.app.state.realtime
    token: str | None = websocket.app.state.token
    if not _authorized(websocket, token):
        hub.metrics.refusals.labels(reason="unauthorized").inc()
        body = UnauthorizedError("missing or invalid bearer token").to_dict()
        await websocket.send_denial_response(
            JSONResponse(body, status_code=401, headers={"www-authenticate": "Bearer"})
        )
        return
    intent = websocket.query_params.get("intent", "transcription")
    if intent != "transcription":
        hub.metrics.refusals.labels(reason="bad_intent").inc()
        await _refuse(
            websocket,
            "unsupported_intent",
            f"intent {intent!r} is not served: this server runs transcription sessions (intent=transcription)",
            CLOSE_NORMAL,
        )
        return
    drain = websocket.scope.get("omoai.drain")
    if drain is not None and drain.draining:
        hub.metrics.refusals.labels(reason="draining").inc()
        await _refuse(websocket, "shutting_down", "this replica is shutting down; reconnect", CLOSE_RESTART)
        return
    outbox = _Outbox(hub.settings.realtime_max_outbox_events)
    try:
        session = hub.new_session(outbox.put)
    except OverloadedError as e:
        hub.metrics.refusals.labels(reason="too_many_sessions").inc()
        await _refuse(websocket, "too_many_sessions", e.message, CLOSE_TRY_AGAIN)
        return
    except UnavailableError as e:
        hub.metrics.refusals.labels(reason="not_ready").inc()
        await _refuse(websocket, "model_loading", e.message, CLOSE_TRY_AGAIN)
        return
    try:
        await websocket.accept()
        await _run(websocket, session, outbox, hub, drain)
    finally:
        hub.remove(session)


async def _run(websocket: WebSocket, session: RealtimeSession, outbox: _Outbox, hub: RealtimeHub, drain: Any) -> None:
    settings = hub.settings
    outbox.put(session.created())
    sender = asyncio.create_task(outbox.send_all(websocket), name=f"{session.id}-send")
    decoder = asyncio.create_task(session.run_events(), name=f"{session.id}-events")
    reader = asyncio.create_task(_read(websocket, session, settings.realtime_idle_timeout_s), name=f"{session.id}-read")
    watchers = {reader, sender, decoder}
    expiry = asyncio.create_task(asyncio.sleep(settings.realtime_max_session_s))
    watchers.add(expiry)
    stopping = asyncio.create_task(drain.stopping.wait()) if drain is not None else None
    if stopping is not None:
        watchers.add(stopping)
    reason = "error"
    try:
        done, _ = await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
        if stopping is not None and stopping in done:
            reason = "shutting_down"
        elif expiry in done:
            reason = "session_expired"
        elif reader in done:
            reason = reader.result() if reader.exception() is None else _failure(reader.exception())
        elif decoder in done:
            reason = _failure(decoder.exception())
            if reason == "shutting_down":  # the runtime stopped under the session: nothing left to send
                await _close(websocket, CLOSE_RESTART, "this replica is shutting down; reconnect")
        else:
            reason = "client_closed"  # the sender failed: the client is gone
        if reason in ("shutting_down", "session_expired", "idle_timeout"):
            await _finish(websocket, session, outbox, sender, decoder, reader, reason)
        elif reason == "client_too_slow":
            await _close(websocket, CLOSE_POLICY, "client too slow: it does not read its events")
        elif reason == "error":
            await _close(websocket, CLOSE_INTERNAL, "internal error")
    finally:
        session.abandon()
        for task in (reader, sender, decoder, expiry, stopping):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (reader, sender, decoder, expiry, stopping) if t), return_exceptions=True)
        hub.metrics.sessions_ended.labels(reason=reason).inc()


def _failure(e: BaseException | None) -> str:
    if isinstance(e, OutboxFullError):
        return "client_too_slow"
    if isinstance(e, StreamFailedError) and isinstance(e.error, UnavailableError):
        return "shutting_down"
    if isinstance(e, WebSocketDisconnect):
        return "client_closed"
    log.error("realtime session failed: %r", e)
    return "error"


async def _read(websocket: WebSocket, session: RealtimeSession, idle_timeout_s: float) -> str:
    """Frames into the session until the client closes or goes idle; backpressure before each read."""
    while True:
        try:
            message = await asyncio.wait_for(websocket.receive(), idle_timeout_s)
        except TimeoutError:
            return "idle_timeout"
        if message["type"] == "websocket.disconnect":
            return "client_closed"
        if message.get("text") is not None:
            await session.handle_text(message["text"])  # may wait for the decoder: backpressure
        else:
            session.handle_binary()


_MESSAGES = {
    "shutting_down": ("this replica is shutting down: every item was transcribed; reconnect", CLOSE_RESTART),
    "session_expired": ("the session reached its maximum length; open a new one", CLOSE_POLICY),
    "idle_timeout": ("no event arrived within the idle timeout; the session is closed", CLOSE_POLICY),
}


async def _finish(
    websocket: WebSocket,
    session: RealtimeSession,
    outbox: _Outbox,
    sender: asyncio.Task[None],
    decoder: asyncio.Task[None],
    reader: asyncio.Task[str],
    reason: str,
) -> None:
    """A server-side end: stop reading, transcribe what was sent, send it all, then close."""
    reader.cancel()
    message, code = _MESSAGES[reason]
    try:
        await asyncio.gather(reader, return_exceptions=True)
        await session.finish()
        await asyncio.wait_for(decoder, FINAL_SEND_S)  # the event task ends with the closed stream
        outbox.put(ev.ErrorEvent(error=ev.ErrorDetail(type="server_error", code=reason, message=message)))
        outbox.queue.put_nowait(None)
        await asyncio.wait_for(sender, FINAL_SEND_S)
    except (OutboxFullError, StreamFailedError, asyncio.QueueFull, TimeoutError, WebSocketDisconnect, RuntimeError):
        pass
    await _close(websocket, code, message)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    """The close frame, unless the client does not read (then the send would wait forever): the
    connection is dropped when the app returns, its unsent bytes bounded by the transport's buffer."""
    if websocket.client_state is WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(websocket.close(code, reason[:120]), FINAL_SEND_S)
